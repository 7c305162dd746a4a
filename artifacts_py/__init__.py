"""artifacts-py: Julia-compatible, content-addressed artifacts for Python."""
__version__ = "0.1.0"
