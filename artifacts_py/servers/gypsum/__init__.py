"""The gypsum-compatible service (``artifacts-gypsum``), see ``gypsum-protocol.md``.

The HTTP layer is :mod:`.handler`, the flags and entry point :mod:`.server`,
the endpoints' work :mod:`.actions`, and the object stores :mod:`.store_local`
and :mod:`.store_s3` (the latter needs the ``s3`` extra). :func:`.launch.start_gypsum`
runs one in a child process for tests and demos.
"""
