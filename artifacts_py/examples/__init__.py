"""Runnable examples shipped with artifacts-py (``python -m artifacts_py.examples.quickstart``)."""
