"""Reading one request file: its owner, its JSON body and the body's fields (§3.3, §5.1).

:class:`Request` reads lazily, so each action can keep Go's order of checks
(for example identity and admin role before the JSON is parsed).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from artifacts_py.servers.gobbler.auth import user_name
from artifacts_py.servers.gobbler.registry import NOFOLLOW_FILE, ActionError, check_name

MAX_REQUEST_BYTES = 1 << 20
MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300


def _parse_int(text: str) -> int:
    """``int(text)`` for the JSON parser, refusing numbers Python would refuse with advice."""
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"a number has {digits} digits, more than the {MAX_INT_DIGITS} allowed")
    return int(text)


def bad_string(value: Any) -> Optional[str]:
    """Where ``value`` holds a string no name or path may hold (NUL, lone surrogate), or None.

    Walks without recursion: the JSON may nest as deep as the parser allowed.
    """
    stack: List[Tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, f"{where}.{key}" if where else str(key)))
                stack.append((child, f"{where}.{key}" if where else str(key)))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, str):
            if "\x00" in item:
                return f"{json.dumps(where)} holds a NUL character"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"{json.dumps(where)} holds a lone surrogate, which is not valid Unicode"
    return None


def never() -> bool:
    """The cancellation check of a request nobody can cancel."""
    return False


def stop_if_cancelled(cancelled: Callable[[], bool]) -> None:
    """Abandon an action whose client has gone away (the caller cleans up)."""
    if cancelled():
        raise ActionError(400, "the client disconnected before the request was finished")


class Request:
    """A request file in the staging directory, read lazily.

    ``cancelled()`` says whether the client has gone away (long actions
    check it and stop, as Go's handlers do with the request context).
    """

    def __init__(self, path: str, cancelled: Callable[[], bool] = never) -> None:
        self.path = path
        self.cancelled = cancelled
        self._body: Optional[Dict[str, Any]] = None
        self._user: Optional[str] = None

    def user(self) -> str:
        """The name of the request file's owner (§5.1)."""
        if self._user is None:
            try:
                uid = os.stat(self.path).st_uid
            except OSError as exc:
                raise ActionError(400, f"failed to stat request file {self.path!r}; {exc}") from exc
            self._user = user_name(uid, f"request file {self.path!r}")
        return self._user

    def body(self) -> Dict[str, Any]:
        """The parsed JSON object of the request file; 400 when it is not one."""
        if self._body is None:
            try:
                # No symlink swapped in after the checks, and never block on a FIFO.
                fd = os.open(self.path, NOFOLLOW_FILE)
                with os.fdopen(fd, "rb") as handle:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        raise ActionError(400, f"request file {self.path!r} is not a regular file")
                    raw = handle.read(MAX_REQUEST_BYTES + 1)
            except OSError as exc:
                raise ActionError(400, f"failed to read request file {self.path!r}; {exc}") from exc
            if len(raw) > MAX_REQUEST_BYTES:
                raise ActionError(400, f"request file {self.path!r} is larger than "
                                       f"{MAX_REQUEST_BYTES} bytes")
            try:
                body = json.loads(raw, parse_int=_parse_int)
            except RecursionError as exc:
                raise ActionError(400, f"failed to parse JSON from {self.path!r}; "
                                       "it is nested too deeply") from exc
            except ValueError as exc:
                raise ActionError(400, f"failed to parse JSON from {self.path!r}; {exc}") from exc
            if not isinstance(body, dict):
                raise ActionError(400, f"expected a JSON object in {self.path!r}")
            problem = bad_string(body)
            if problem is not None:
                raise ActionError(400, f"failed to parse JSON from {self.path!r}; {problem}")
            self._body = body
        return self._body


def optional_bool(body: Dict[str, Any], key: str) -> bool:
    """``body[key]`` as a bool, False when absent or null; 400 for other types."""
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ActionError(400, f"expected '{key}' to be a boolean")
    return value


def names(body: Dict[str, Any], *fields: str) -> List[str]:
    """Validate the named fields of ``body`` as names (400)."""
    return [check_name(body, f) for f in fields]
