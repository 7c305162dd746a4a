"""Turning a GitHub token into a login and its organisations (§3.2).

Calls ``GET {api}/user`` and ``GET {api}/user/orgs`` (all pages, unlike the
worker's first 30) on a configurable API base, so GitHub Enterprise and the
tests' stand-in work. The token is sent only to that base and never logged
or put in an error message.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, List, Tuple

import urllib3

from artifacts_py.servers.gypsum.errors import GypsumError

log = logging.getLogger(__name__)
_PAGE = 100
_MAX_PAGES = 20


@dataclass(frozen=True)
class Identity:
    """A GitHub user: login and organisation logins."""

    login: str
    organizations: Tuple[str, ...]


class GitHub:
    """A small client for the two identity calls."""

    def __init__(self, api: str, user_agent: str = "artifacts-gypsum",
                 timeout: float = 20.0) -> None:
        self.api = api.rstrip("/")
        self.user_agent = user_agent
        self.http = urllib3.PoolManager(maxsize=16, retries=urllib3.Retry(
            total=2, connect=2, read=0, status=0, redirect=0),
            timeout=urllib3.Timeout(connect=timeout, read=timeout))
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gypsum-github")

    def _get(self, path: str, token: str) -> Tuple[int, Any]:
        url = self.api + path
        try:
            reply = self.http.request("GET", url, headers={
                "Authorization": f"Bearer {token}", "User-Agent": self.user_agent,
                "Accept": "application/vnd.github+json"})
        except urllib3.exceptions.HTTPError as exc:
            raise GypsumError(500, f"failed to reach GitHub at {self.api}: "
                                   f"{type(exc).__name__}") from None
        try:
            body = json.loads(reply.data) if reply.data else None
        except ValueError:
            body = None
        return reply.status, body

    def _orgs(self, token: str) -> List[str]:
        orgs: List[str] = []
        for page in range(1, _MAX_PAGES + 1):
            status, body = self._get(f"/user/orgs?per_page={_PAGE}&page={page}", token)
            if not 200 <= status < 300 or not isinstance(body, list):
                log.warning("GitHub answered %s for /user/orgs; using no organisations", status)
                return []
            orgs.extend(o["login"] for o in body
                        if isinstance(o, dict) and isinstance(o.get("login"), str))
            if len(body) < _PAGE:
                break
        return orgs

    def identity(self, token: str) -> Identity:
        """The user behind ``token``; 401 when GitHub refuses it, 500 when unreachable."""
        orgs = self.pool.submit(self._orgs, token)
        status, body = self._get("/user", token)
        if not 200 <= status < 300 or not isinstance(body, dict) \
                or not isinstance(body.get("login"), str):
            orgs.cancel()
            reason = "failed to query GitHub for user identity"
            if isinstance(body, dict) and isinstance(body.get("message"), str):
                reason += ": " + body["message"]
            raise GypsumError(401, reason)
        return Identity(body["login"], tuple(orgs.result()))

    def close(self) -> None:
        """Drop connections and worker threads."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.http.clear()
