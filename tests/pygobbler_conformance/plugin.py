"""pytest plugin: point pygobbler's own test suite at artifacts-gobbler.

Loaded by ``scripts/pygobbler-conformance`` with ``-p pygobbler_conformance.plugin``
while pytest runs the ``tests/`` folder of the pygobbler sdist.  It replaces
``pygobbler.start_gobbler``/``stop_gobbler`` (the package attribute and the
function in the ``pygobbler.start_gobbler`` module) so that the suite talks
to our server instead of downloading the Go binary.  Nothing of pygobbler is
copied or edited.
"""

from __future__ import annotations

import getpass
import sys
from typing import Any, Optional, Sequence, Tuple

import pytest

_started: list[str] = []


def start_gobbler(
    staging: Optional[str] = None,
    registry: Optional[str] = None,
    port: Optional[int] = None,
    wait: float = 1,
    version: str = "0.5.0",
    overwrite: bool = False,
    admin: Optional[Sequence[str]] = None,
    extra_args: Sequence[str] = (),
) -> Tuple[bool, str, str, str]:
    """Same signature and result as pygobbler's, but starts artifacts-gobbler.

    ``wait``, ``version`` and ``overwrite`` concern the Go binary and are
    ignored: our launcher returns once the server is listening.
    """
    from artifacts_py.servers.gobbler import launch

    if admin is None:
        # pygobbler's default: the current user is the administrator.
        admin = [getpass.getuser()]
    result = launch.start_gobbler(
        staging=staging, registry=registry, port=port, admin=list(admin),
        extra_args=tuple(extra_args),
    )
    if result[0]:
        _started.append(result[3])
    return result


def stop_gobbler() -> None:
    """Stop the server started by :func:`start_gobbler` (no-op if none)."""
    from artifacts_py.servers.gobbler import launch

    launch.stop_gobbler()


def _no_download(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("pygobbler conformance: the Go gobbler binary must never be used; "
                       "start_gobbler was not patched where the caller imported it")


def _patch() -> None:
    """Swap the helpers everywhere pygobbler exposes them."""
    import pygobbler

    module = sys.modules["pygobbler.start_gobbler"]
    for target in (pygobbler, module):
        target.start_gobbler = start_gobbler  # type: ignore[attr-defined]
        target.stop_gobbler = stop_gobbler  # type: ignore[attr-defined]
    # Belt and braces: any path still reaching the original must not download.
    module._acquire_gobbler_binary = _no_download  # type: ignore[attr-defined]


def pytest_configure(config: pytest.Config) -> None:
    """Patch before any test module is imported."""
    _patch()


def pytest_report_header(config: pytest.Config) -> str:
    """Make it visible in the log which server the suite runs against."""
    import pygobbler

    return (f"pygobbler {pygobbler.__version__} from {pygobbler.__file__}; "
            "start_gobbler -> artifacts_py.servers.gobbler.launch")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop our server; fail the run if tests ran but never reached it."""
    stop_gobbler()
    if session.testscollected and not _started and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report the server URL(s) used."""
    terminalreporter.write_line(f"artifacts-gobbler servers used: {_started or 'NONE'}")
