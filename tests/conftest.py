"""Shared test set-up: every test gets its own empty depot and no stray env.

Fixtures for real servers live here too: ``http_server`` (a misbehaving-on-
demand HTTP server, :mod:`httpserver`) and ``gobbler_factory`` (start our
Gobbler server on a fresh registry; every test that needs one uses it or
its per-test twin ``gobbler_factory_fn``, and gets a
:class:`gobbler_helpers.RunningGobbler`).
"""

import contextlib
import os
import pwd
from pathlib import Path
from typing import Iterator, List, Sequence, Union

import pytest
from gobbler_helpers import GobblerFactory, RunningGobbler
from httpserver import http_server  # noqa: F401  (the fixture, shared by every module)

_ENV = ["ARTIFACTS_PY_DEPOT_PATH", "ARTIFACTS_PY_OFFLINE", "ARTIFACTS_PY_TOML",
        "ARTIFACTS_PY_GOBBLER_URL", "ARTIFACTS_PY_GOBBLER_REGISTRY", "ARTIFACTS_PY_PLATFORM",
        "ARTIFACTS_PY_GYPSUM_URL", "ARTIFACTS_PY_MAX_CONNECTIONS", "ARTIFACTS_PY_RETRIES",
        "ARTIFACTS_PY_TIMEOUT", "GYPSUM_TOKEN", "GITHUB_TOKEN"]


@pytest.fixture(autouse=True)
def isolated_depot(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the depot stack at a fresh directory and clear our variables."""
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    depot = tmp_path_factory.mktemp("depot")
    monkeypatch.setenv("ARTIFACTS_PY_DEPOT_PATH", str(depot))
    # Proxies on a CI machine must never capture loopback test traffic.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    yield depot


@contextlib.contextmanager
def _gobbler_starter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GobblerFactory]:
    """The one way tests start our Gobbler server; stops all it started on exit."""
    started: List[RunningGobbler] = []

    def start(*flags: str, admin: Union[None, str, Sequence[str]] = None,
              base: Union[None, str, Path] = None) -> RunningGobbler:
        server = RunningGobbler(base or tmp_path_factory.mktemp("gobbler"), *flags,
                                admin=admin or pwd.getpwuid(os.geteuid()).pw_name)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def gobbler_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GobblerFactory]:
    """``start(*flags, admin=None, base=None)``: our Gobbler server, a child process.

    Each call starts one more on a fresh registry and staging (or on
    ``base/registry`` and ``base/staging``, which may be filled already) and
    returns its :class:`RunningGobbler` once the server printed its port; its
    stderr is kept (``server.stderr()``). ``admin`` (a name or several)
    defaults to the current user; ``flags`` go to ``artifacts-gobbler``
    (``-prefix``, ...). All are stopped when the module ends.
    """
    with _gobbler_starter(tmp_path_factory) as start:
        yield start


@pytest.fixture
def gobbler_factory_fn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GobblerFactory]:
    """:func:`gobbler_factory` whose servers are stopped when the test ends."""
    with _gobbler_starter(tmp_path_factory) as start:
        yield start
