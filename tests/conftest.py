"""Shared test set-up: every test gets its own empty depot and no stray env."""

import os

import pytest

_ENV = ["ARTIFACTS_PY_DEPOT_PATH", "ARTIFACTS_PY_OFFLINE", "ARTIFACTS_PY_TOML",
        "ARTIFACTS_PY_GOBBLER_URL", "ARTIFACTS_PY_GOBBLER_REGISTRY", "ARTIFACTS_PY_PLATFORM"]


@pytest.fixture(autouse=True)
def isolated_depot(tmp_path_factory, monkeypatch):
    """Point the depot stack at a fresh directory and clear our variables."""
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    depot = tmp_path_factory.mktemp("depot")
    monkeypatch.setenv("ARTIFACTS_PY_DEPOT_PATH", str(depot))
    # Proxies on a CI machine must never capture loopback test traffic.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    yield depot
