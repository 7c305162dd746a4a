"""GitHub tokens for the gypsum client: where they come from, and where they are kept.

A call that needs a token uses, in order: its ``token`` argument,
``GYPSUM_TOKEN``, ``GITHUB_TOKEN``, then :func:`access_token` (a token set
earlier in this process, else ``<cache>/credentials/token.txt``). Only when
stdin is a terminal may :func:`set_access_token` run GitHub's device login
(it prints a code and a URL; it never opens a browser); otherwise it refuses
at once with what to do. Tokens never appear in messages or logs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, Dict, Optional, Union
from urllib.parse import urlsplit

from .. import transport
from ..errors import DownloadError, GypsumError, OfflineError
from . import config

log = logging.getLogger(__name__)

TOKEN_ENV = ("GYPSUM_TOKEN", "GITHUB_TOKEN")
GITHUB_API = "https://api.github.com"
TokenInfo = Dict[str, Any]  # {"token": str, "name": str, "expires": float}
TOKEN_CACHE: Dict[str, Optional[TokenInfo]] = {"auth_info": None}
# How often and how long the device login polls GitHub (its own interval wins if longer).
_POLL_SECONDS = 5.0


def scrub(text: str, *secrets: Optional[str]) -> str:
    """``text`` with every secret (token) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _token_path(cache_dir: str) -> str:
    return os.path.join(cache_dir, "credentials", "token.txt")


def _usable(info: Optional[TokenInfo], limit: float) -> bool:
    return info is not None and float(info["expires"]) > time.time() + limit


def _read_token_file(path: str) -> Optional[TokenInfo]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return None
    try:
        return {"token": lines[0], "name": lines[1], "expires": float(lines[2])}
    except (IndexError, ValueError):
        log.warning("ignoring %s: not three lines (token, login, expiry)", path)
        return None


def access_token(full: bool = False, request: bool = True,
                 cache_dir: config.CacheDir = config.DEFAULT,
                 token_expiration_limit: int = 10) -> Union[str, TokenInfo, None]:
    """The GitHub token set earlier (in memory, else in the cache), or a new one.

    ``full`` returns ``{"token", "name", "expires"}``. A token expiring within
    ``token_expiration_limit`` seconds is not used. With ``request``, a missing
    token is asked for with :func:`set_access_token` (only possible when
    stdin is a terminal); otherwise None is returned.
    """
    info = TOKEN_CACHE.get("auth_info")
    if not _usable(info, token_expiration_limit):
        TOKEN_CACHE["auth_info"] = info = None
        root = config.cache_root(cache_dir)
        if root is not None:
            import filelock

            path = _token_path(root)
            with filelock.FileLock(path + ".LOCK"):
                found = _read_token_file(path)
            if _usable(found, token_expiration_limit):
                TOKEN_CACHE["auth_info"] = info = found
    if info is None:
        if not request:
            return None
        info = set_access_token(cache_dir=cache_dir)
        assert info is not None  # set_access_token("auto") returns a token or raises
    return info if full else str(info["token"])


def resolve_token(token: Optional[str], what: str) -> str:
    """The token a call uses: the argument, ``GYPSUM_TOKEN``, ``GITHUB_TOKEN``, then the stored one."""
    if token:
        return token
    for name in TOKEN_ENV:
        value = os.environ.get(name)
        if value:
            return value
    found = access_token(request=sys.stdin is not None and sys.stdin.isatty())
    if not found:
        raise GypsumError(f"gypsum {what} needs a GitHub token: pass token=..., set "
                          "GYPSUM_TOKEN (or GITHUB_TOKEN), or call set_access_token(token)")
    assert isinstance(found, str)
    return found


def parse_expiry(header: Optional[str]) -> float:
    """GitHub's ``github-authentication-token-expiration`` (``2025-01-31 12:00:00 UTC``) as Unix time."""
    if not header:
        return math.inf
    text = header.strip().replace(" UTC", " +0000")
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S"):
        try:
            stamp = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return stamp.timestamp()
    log.warning("cannot read the token expiry %r from GitHub; treating the token as "
                "non-expiring", header)
    return math.inf


def send(method: str, url: str, what: str, *, token: Optional[str] = None, body: Any = None,
         headers: Optional[Dict[str, str]] = None) -> transport.Response:
    """One request through the transport, with the bearer ``token`` and a JSON ``body``.

    Returns the answer whatever its status; GypsumError (the token scrubbed)
    when there is none. GET and HEAD are retried, nothing else.
    """
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    try:
        return transport.default().request(method, url, body=data, headers=sent,
                                           retry=method in ("GET", "HEAD"))
    except OfflineError:
        raise
    except DownloadError as exc:
        raise GypsumError(f"{what} failed: {scrub(str(exc), token)}; check that the service is "
                          "running and the URL is right", url=url) from None


def _github_json(method: str, url: str, what: str, token: Optional[str] = None,
                 body: Optional[Dict[str, str]] = None,
                 user_agent: Optional[str] = None) -> transport.Response:
    headers = {"Accept": "application/json"}
    if user_agent:
        headers["User-Agent"] = user_agent
    res = send(method, url, what, token=token, body=body, headers=headers)
    if res.status >= 300:
        try:
            reason = str(res.json().get("message", ""))
        except (ValueError, AttributeError):
            reason = res.text[:200]
        raise GypsumError(f"{what} failed (HTTP {res.status}): {scrub(reason, token)}",
                          status=res.status, reason=scrub(reason, token), url=url)
    return res


def _write_token_file(cache_dir: str, info: TokenInfo) -> None:
    """``token.txt`` (mode 0600, written whole then renamed) under its lock."""
    import filelock

    path = _token_path(cache_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with filelock.FileLock(path + ".LOCK"):
        temp = path + f".{os.getpid()}.tmp"
        fd = os.open(temp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{info['token']}\n{info['name']}\n{info['expires']}\n")
        os.replace(temp, path)


def _web_base(github_url: str) -> str:
    """GitHub's web root for an API base (github.com, GHE's ``/api/v3``, or a stand-in's own)."""
    parts = urlsplit(github_url)
    if parts.hostname == "api.github.com":
        return "https://github.com"
    root = github_url.rstrip("/")
    return root[: -len("/api/v3")] if root.endswith("/api/v3") else root


def _device_login(client_id: str, github_url: str, user_agent: Optional[str]) -> str:
    """GitHub's device flow: print a code and a URL on stderr, poll until the user approves."""
    web = _web_base(github_url)
    start = _github_json("POST", f"{web}/login/device/code", "GitHub device login",
                         body={"client_id": client_id, "scope": "read:org"},
                         user_agent=user_agent).json()
    sys.stderr.write(f"To authorise gypsum, open {start['verification_uri']} and enter the "
                     f"code {start['user_code']}\n")
    interval = max(_POLL_SECONDS, float(start.get("interval") or 0))
    deadline = time.monotonic() + float(start.get("expires_in") or 900)
    while time.monotonic() < deadline:
        reply = _github_json("POST", f"{web}/login/oauth/access_token", "GitHub device login",
                             body={"client_id": client_id, "device_code": start["device_code"],
                                   "grant_type": "urn:ietf:params:oauth:grant-type:device_code"},
                             user_agent=user_agent).json()
        if reply.get("access_token"):
            return str(reply["access_token"])
        error = reply.get("error")
        if error == "slow_down":
            interval += 5
        elif error != "authorization_pending":
            raise GypsumError(f"GitHub device login failed: {error or 'no token in the reply'}")
        time.sleep(interval)
    raise GypsumError("GitHub device login timed out; run set_access_token() again")


def set_access_token(token: Optional[str] = "auto", app_url: Optional[str] = None,
                     app_key: Optional[str] = None, app_secret: Optional[str] = None,
                     github_url: str = GITHUB_API, user_agent: Optional[str] = None,
                     cache_dir: config.CacheDir = config.DEFAULT
                     ) -> Optional[TokenInfo]:
    """Set (and check) the GitHub token used by later calls; returns ``{token, name, expires}``.

    ``token=None`` forgets the token (in memory, and in ``cache_dir``).
    ``token="auto"`` runs GitHub's device login, only when stdin is a
    terminal (the OAuth app id comes from ``{app_url}/credentials/github-app``
    unless ``app_key`` is given); in any other session it raises at once.
    The token is checked with ``GET {github_url}/user`` (the login and the
    expiry come from there) and stored in ``<cache_dir>/credentials/token.txt``
    (mode 0600) unless ``cache_dir`` is None. ``app_secret`` is accepted for
    compatibility; the device flow does not need it.
    """
    root = config.cache_root(cache_dir)
    if token is None:
        TOKEN_CACHE["auth_info"] = None
        if root is not None:
            try:
                os.unlink(_token_path(root))
            except FileNotFoundError:
                pass
        return None
    if token == "auto":
        if sys.stdin is None or not sys.stdin.isatty():
            raise GypsumError("set_access_token: stdin is not a terminal, so the interactive "
                              "GitHub login cannot run; pass a token (set_access_token(token)) "
                              "or set GYPSUM_TOKEN")
        if not app_key:
            base = config.base_url(app_url)
            app = _github_json("GET", f"{base}/credentials/github-app",
                               "gypsum /credentials/github-app", user_agent=user_agent).json()
            app_key = str(app["id"])
        token = _device_login(app_key, github_url, user_agent)
    res = _github_json("GET", f"{github_url.rstrip('/')}/user", "checking the token with GitHub",
                       token=token, user_agent=user_agent)
    try:
        name = str(res.json()["login"])
    except (ValueError, KeyError, TypeError):
        raise GypsumError(f"{github_url}/user did not return a login; is this GitHub's API?",
                          url=github_url) from None
    info: TokenInfo = {"token": token, "name": name,
                       "expires": parse_expiry(res.headers.get(
                           "github-authentication-token-expiration"))}
    if root is not None:
        _write_token_file(root, info)
    TOKEN_CACHE["auth_info"] = info
    return info
