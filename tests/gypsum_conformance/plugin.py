"""pytest plugin: run gypsum_client 0.2.0's own test suite against artifacts-gypsum.

Loaded by ``scripts/gypsum-conformance`` with ``-p gypsum_conformance.plugin``
while pytest runs the ``tests/`` folder of the gypsum_client sdist. Before any
test module is imported it:

* starts the GitHub API stand-in (``tests/github_standin.py``) with one
  administrator token, and ``artifacts-gypsum`` on a fresh local store
  pointed at it;
* creates what the suite expects to find: ``test-R/basic`` v1 (``blah.txt``,
  ``foo/bar.txt``), v2 (both files links to v1) and v3 (links to v2, so
  their ancestors are v1's files), and the project ``test-Py``; using our own
  client (:mod:`artifacts_py.gypsum`); and the administrator's token stored
  in the client's default cache (``credentials/token.txt``), where
  ``access_token()`` finds it for the calls made without ``token=`` (as on a
  machine where ``set_access_token`` was run once);
* points the suite at them the way the suite reads them: ``gh_token`` in the
  environment (the tests skip without it), the client's import-time defaults
  (``https://gypsum.artifactdb.com`` for ``url``/``app_url``, and
  ``https://api.github.com`` for ``github_url``) and the test modules'
  ``app_url`` constant (``https://gypsum-test.artifactdb.com``) replaced by
  the local URLs.

Internet access is cut (a dead proxy for everything but 127.0.0.1), so a
test that still needs the internet fails instead of passing by accident.
Nothing of gypsum_client is copied or edited.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from types import FunctionType, ModuleType
from typing import Any, Dict, List, Optional

import pytest

PRODUCTION = "https://gypsum.artifactdb.com"
TEST_INSTANCE = "https://gypsum-test.artifactdb.com"
GITHUB = "https://api.github.com"
ADMIN_TOKEN = "gypsum-conformance-admin-token"
ADMIN_LOGIN = "gypsum-conformance-admin"
BLAH = "".join(f"{chr(c)}\n" for c in range(ord("A"), ord("Z") + 1))
FOOBAR = "1 2 3 4 5\n6 7 8 9 10\n"

_state: Dict[str, Any] = {}


def _start() -> None:
    from github_standin import GitHubStandIn

    from artifacts_py.servers.gypsum.launch import GypsumProcess

    github = GitHubStandIn()
    github.add_user(ADMIN_TOKEN, ADMIN_LOGIN, ["ArtifactDB"])
    store = tempfile.mkdtemp(prefix="gypsum-conformance-store-")
    service = GypsumProcess(["--port", "0", "--store", store, "--admin", ADMIN_LOGIN,
                             "--github-api", github.url])
    _state.update(github=github, service=service, store=store, url=service.url)


def _fixtures(url: str) -> None:
    """test-R/basic v1-v3 as on the real test instance, and the project test-Py."""
    from artifacts_py import gypsum

    gypsum.create_project("test-R", owners=[ADMIN_LOGIN], url=url, token=ADMIN_TOKEN)
    gypsum.create_project("test-Py", owners=[ADMIN_LOGIN], url=url, token=ADMIN_TOKEN)
    src = tempfile.mkdtemp(prefix="gypsum-conformance-src-")
    try:
        os.makedirs(os.path.join(src, "foo"))
        with open(os.path.join(src, "blah.txt"), "w") as handle:
            handle.write(BLAH)
        with open(os.path.join(src, "foo", "bar.txt"), "w") as handle:
            handle.write(FOOBAR)
        gypsum.upload_directory(src, "test-R", "basic", "v1", deduplicate=False,
                                cache_dir=None, url=url, token=ADMIN_TOKEN)
    finally:
        shutil.rmtree(src)
    for version, previous in (("v2", "v1"), ("v3", "v2")):
        links = [{"from.path": p, "to.project": "test-R", "to.asset": "basic",
                  "to.version": previous, "to.path": p} for p in ("blah.txt", "foo/bar.txt")]
        init = gypsum.start_upload("test-R", "basic", version, files=[], links=links, url=url,
                                   token=ADMIN_TOKEN)
        gypsum.complete_upload(init, url=url)


def _store_token(cache: str) -> None:
    """``<cache>/credentials/token.txt`` as set_access_token writes it (never expires)."""
    path = os.path.join(cache, "credentials", "token.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(f"{ADMIN_TOKEN}\n{ADMIN_LOGIN}\ninf")
    os.chmod(path, 0o600)


def _retarget(module: ModuleType, url: str, github: str) -> int:
    """Replace the import-time URL defaults of every function of ``module``."""
    swap = {PRODUCTION: url, GITHUB: github}
    changed = 0
    for value in list(vars(module).values()):
        if not isinstance(value, FunctionType) or value.__module__ != module.__name__:
            continue
        if value.__defaults__:
            new = tuple(swap.get(d, d) if isinstance(d, str) else d
                        for d in value.__defaults__)
            changed += new != value.__defaults__
            value.__defaults__ = new
    return changed


def _patch_client(url: str, github: str) -> None:
    import gypsum_client  # type: ignore[import-untyped]

    gypsum_client.rest_url(url)
    modules = [m for name, m in sys.modules.items()
               if name.startswith("gypsum_client.") and isinstance(m, ModuleType)]
    if sum(_retarget(m, url, github) for m in modules) == 0:
        raise RuntimeError("gypsum conformance: found no URL defaults to patch in gypsum_client")


def pytest_configure(config: pytest.Config) -> None:
    """Start the services, create the fixtures, point gypsum_client at them."""
    if _state:
        return
    work = tempfile.mkdtemp(prefix="gypsum-conformance-")
    os.environ["GYPSUM_CACHE_DIR"] = os.path.join(work, "cache")  # read at import
    # No internet: anything but loopback goes to a closed port and fails fast.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ[name] = "http://127.0.0.1:9"
    for name in ("no_proxy", "NO_PROXY"):
        os.environ[name] = "127.0.0.1,localhost"
    _start()
    os.environ["gh_token"] = ADMIN_TOKEN
    _store_token(os.environ["GYPSUM_CACHE_DIR"])
    _state["work"] = work
    _fixtures(_state["url"])
    _patch_client(_state["url"], _state["github"].url)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: List[pytest.Item]) -> None:
    """The suite's write tests name the test instance in a module constant: point it here."""
    for item in items:
        module: Optional[ModuleType] = getattr(item, "module", None)
        if module is not None and getattr(module, "app_url", None) == TEST_INSTANCE:
            module.app_url = _state["url"]  # type: ignore[attr-defined]


def pytest_report_header(config: pytest.Config) -> str:
    import gypsum_client

    return (f"gypsum_client {gypsum_client.__version__} from {gypsum_client.__file__}; "
            f"artifacts-gypsum at {_state.get('url')}, GitHub stand-in at "
            f"{_state['github'].url if 'github' in _state else None}")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the services and remove the store."""
    service = _state.pop("service", None)
    if service is not None:
        service.stop()
    github = _state.pop("github", None)
    if github is not None:
        github.close()
    for key in ("store", "work"):
        path = _state.pop(key, None)
        if path:
            shutil.rmtree(path, ignore_errors=True)
