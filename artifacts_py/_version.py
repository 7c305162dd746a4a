"""The package version, in one place (read by setuptools and by ``artifacts_py.__version__``)."""

__version__ = "0.1.0"
