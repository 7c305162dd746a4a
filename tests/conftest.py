"""Shared test set-up: every test gets its own empty depot and no stray env.

Fixtures for real servers live here too: ``http_server`` (a misbehaving-on-
demand HTTP server, :mod:`httpserver`) and ``gobbler_factory`` (start our
Gobbler server on a fresh registry; every test module that needs one uses
it, and gets a :class:`gobbler_helpers.RunningGobbler`).
"""

import getpass
import os
from typing import Callable, Iterator, List, Optional

import pytest
from gobbler_helpers import RunningGobbler
from httpserver import http_server  # noqa: F401  (the fixture, shared by every module)

_ENV = ["ARTIFACTS_PY_DEPOT_PATH", "ARTIFACTS_PY_OFFLINE", "ARTIFACTS_PY_TOML",
        "ARTIFACTS_PY_GOBBLER_URL", "ARTIFACTS_PY_GOBBLER_REGISTRY", "ARTIFACTS_PY_PLATFORM",
        "ARTIFACTS_PY_GYPSUM_URL", "ARTIFACTS_PY_MAX_CONNECTIONS", "ARTIFACTS_PY_RETRIES",
        "ARTIFACTS_PY_TIMEOUT", "GYPSUM_TOKEN", "GITHUB_TOKEN"]


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


@pytest.fixture(scope="module")
def gobbler_factory(tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Callable[..., RunningGobbler]]:
    """``start(*flags, admin=None)``: our Gobbler server on a fresh registry and staging.

    Each call starts one more (a child process, ready once it printed its
    port); all are stopped when the module ends. ``admin`` defaults to the
    current user; ``flags`` go to ``artifacts-gobbler`` (``-prefix``, ...).
    """
    started: List[RunningGobbler] = []

    def start(*flags: str, admin: Optional[str] = None) -> RunningGobbler:
        base = tmp_path_factory.mktemp("gobbler")
        server = RunningGobbler(str(base), *flags, admin=admin or getpass.getuser())
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
