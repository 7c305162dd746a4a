"""The registry services artifacts-py ships (server side only).

``servers.gobbler`` is the Gobbler-compatible service (``artifacts-gobbler``).
Nothing here is imported by the client side (``artifact()``, the sources, the
Gobbler client) except the launchers used by tests and demos.
"""
