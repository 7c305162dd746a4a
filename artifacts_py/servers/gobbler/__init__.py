"""The Gobbler-compatible service: registry layout, actions, HTTP layer, launcher.

``server`` is ``artifacts-gobbler`` (``python -m artifacts_py.servers.gobbler.server``);
``launch`` starts one as a child process or a thread for tests and demos.
"""
