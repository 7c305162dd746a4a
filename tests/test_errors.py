"""The error hierarchy, and the layering rules that keep the package readable.

Every exception class the package defines is exported from ``artifacts_py`` and
is also the standard exception the spec names; exactly one client-side module
speaks HTTP; ``ARTIFACTS_PY_OFFLINE`` stops every request before a socket opens.
"""

from __future__ import annotations

import ast
import inspect
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import artifacts_py
from artifacts_py import errors

PACKAGE = Path(artifacts_py.__file__).parent

# What a caller may catch each error as (the spec: KeyError for an unknown name,
# ValueError for malformed input or a mismatch, OSError for I/O and network).
STANDARD = {
    "ArtifactError": Exception,
    "ArtifactsTomlError": ValueError,
    "ArtifactNotFoundError": KeyError,
    "TomlNotFoundError": FileNotFoundError,
    "BindingExistsError": ValueError,
    "SettingError": ValueError,
    "InvalidArgumentError": ValueError,
    "HashMismatchError": ValueError,
    "UnsafeArchiveError": ValueError,
    "UnsupportedArchiveError": ValueError,
    "PlatformError": ValueError,
    "DownloadError": OSError,
    "OfflineError": ConnectionError,
    "NotInstalledError": FileNotFoundError,
    "SourceUnavailableError": OSError,
    "InstallError": OSError,
    "DepotError": OSError,
    "GobblerError": OSError,
    "GobblerNotFoundError": LookupError,
    "GypsumError": OSError,
    "GypsumNotFoundError": LookupError,
}


def _defined_exceptions() -> dict:
    """Every exception class defined anywhere in artifacts_py (client side), by name."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "servers" in path.parts:
            continue  # the services' internal errors never reach a client
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and (node.name.endswith("Error")
                                                   or node.name.endswith("Exception")):
                found[node.name] = path.relative_to(PACKAGE)
    return found


def test_every_exception_lives_in_errors_and_is_exported():
    defined = _defined_exceptions()
    elsewhere = {n: str(p) for n, p in defined.items()
                 if str(p) != "errors.py" and not n.startswith("_")}
    assert elsewhere == {}
    for name in defined:
        if name.startswith("_"):
            continue
        assert getattr(artifacts_py, name) is getattr(errors, name)
        assert name in artifacts_py.__all__


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_each_error_is_the_standard_exception(name):
    cls = getattr(artifacts_py, name)
    assert issubclass(cls, artifacts_py.ArtifactError) and issubclass(cls, STANDARD[name])


def test_the_table_above_covers_every_error():
    public = {n for n, c in inspect.getmembers(errors, inspect.isclass)
              if issubclass(c, Exception) and c.__module__ == errors.__name__}
    assert public == set(STANDARD)


def test_hash_mismatch_has_one_meaning():
    err = errors.hash_mismatch("sha256", "a" * 64, "b" * 64, what="https://x/y.tar.gz",
                               advice="the file changed")
    assert (err.kind, err.expected, err.actual) == ("sha256", "a" * 64, "b" * 64)
    assert str(err).startswith("https://x/y.tar.gz: sha256 mismatch: expected aaaa")


def _imports(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


HTTP_LIBRARIES = ("urllib3", "requests", "http.client", "urllib.request", "httpx", "aiohttp")


def test_exactly_one_client_module_speaks_http():
    speaking = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                      if "servers" not in p.parts
                      and any(m == lib or m.startswith(lib + ".") for m in _imports(p)
                              for lib in HTTP_LIBRARIES))
    assert speaking == ["transport.py"]


def test_import_is_cheap():
    code = ("import sys, artifacts_py; "
            "print(sorted(m for m in ('requests', 'urllib3', 'tomlkit', 'filelock', 'tqdm', "
            "'platformdirs', 'logging') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def listener():
    """A TCP socket that counts connection attempts (nothing may connect offline)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    yield sock, f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def _accepted(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            conn, _ = sock.accept()
        except (socket.timeout, BlockingIOError):
            return n
        conn.close()
        n += 1


def test_offline_refuses_every_gobbler_call_before_a_socket(listener, monkeypatch, tmp_path):
    from artifacts_py import gobbler

    sock, url = listener
    monkeypatch.setenv("ARTIFACTS_PY_OFFLINE", "1")
    staging = tmp_path / "staging"
    staging.mkdir()
    calls = [
        lambda: gobbler.fetch_manifest("p", "a", "v", url=url),
        lambda: gobbler.fetch_summary("p", "a", "v", url=url),
        lambda: gobbler.fetch_latest("p", "a", url=url),
        lambda: gobbler.list_projects(url=url),
        lambda: gobbler.list_files("p", "a", "v", url=url),
        lambda: gobbler.fetch_file("p/a/v/x.txt", url=url),
        lambda: gobbler.service_info(url),
        lambda: gobbler.create_project("p", str(staging), url),
    ]
    for call in calls:
        with pytest.raises(artifacts_py.OfflineError, match="ARTIFACTS_PY_OFFLINE"):
            call()
    assert _accepted(sock) == 0
    assert list(staging.iterdir()) == []  # no request file left behind either
