"""A local stand-in for the two GitHub REST API calls gypsum makes: ``GET /user``
and ``GET /user/orgs``.

For demos, tests and single-machine sites that cannot reach GitHub: point
``artifacts-gypsum --github-api`` at it and give each user a token of its own.

It answers as api.github.com does: JSON shapes of the real objects (trimmed to
the documented fields), ``application/json; charset=utf-8``, 401 ``Bad
credentials`` for an unknown token and ``Requires authentication`` with no
token, ``per_page``/``page`` pagination with a ``Link`` header. Tokens are
mapped to users and organisations by the test (``add_user``). It counts the
requests per token so tests can check the service's caching.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

DOCS = "https://docs.github.com/rest"


def _user(login: str, uid: int) -> Dict[str, object]:
    api = "https://api.github.com/users/" + login
    return {"login": login, "id": uid, "node_id": f"MDQ6VXNlcj{uid}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
            "gravatar_id": "", "url": api, "html_url": "https://github.com/" + login,
            "type": "User", "site_admin": False, "name": login.title(), "company": None,
            "blog": "", "location": None, "email": None, "hireable": None, "bio": None,
            "public_repos": 0, "followers": 0, "following": 0,
            "created_at": "2020-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"}


def _org(login: str, uid: int) -> Dict[str, object]:
    api = "https://api.github.com/orgs/" + login
    return {"login": login, "id": uid, "node_id": f"MDEyOk9yZ2FuaXphdGlvbj{uid}",
            "url": api, "repos_url": api + "/repos", "events_url": api + "/events",
            "hooks_url": api + "/hooks", "issues_url": api + "/issues",
            "members_url": api + "/members{/member}",
            "public_members_url": api + "/public_members{/member}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
            "description": None}


class GitHubStandIn:
    """The stand-in server on 127.0.0.1; ``url`` is its API base."""

    def __init__(self) -> None:
        self.users: Dict[str, Tuple[str, List[str]]] = {}
        self.calls: Counter[Tuple[str, str]] = Counter()  # (path, token) -> count
        self.orgs_status = 200  # set to 403 etc. to make /user/orgs fail
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                standin._answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_user(self, token: str, login: str, orgs: Sequence[str] = ()) -> None:
        """Make ``token`` authenticate ``login``, a member of ``orgs``."""
        with self._lock:
            self.users[token] = (login, list(orgs))

    def count(self, path: str, token: str) -> int:
        """How many times ``path`` was asked for with ``token``."""
        with self._lock:
            return self.calls[(path, token)]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        header = handler.headers.get("Authorization") or ""
        token: Optional[str] = None
        for scheme in ("Bearer ", "token "):
            if header.startswith(scheme):
                token = header[len(scheme):]
        with self._lock:
            self.calls[(parts.path, token or "")] += 1
            user = self.users.get(token or "")
        if parts.path not in ("/user", "/user/orgs"):
            return self._send(handler, 404, {"message": "Not Found", "documentation_url": DOCS,
                                             "status": "404"})
        if token is None:
            return self._send(handler, 401, {
                "message": "Requires authentication", "status": "401",
                "documentation_url": DOCS + "/users/users#get-the-authenticated-user"})
        if user is None:
            return self._send(handler, 401, {"message": "Bad credentials",
                                             "documentation_url": DOCS, "status": "401"})
        login, orgs = user
        if parts.path == "/user":
            return self._send(handler, 200, _user(login, 1000 + len(login)))
        if self.orgs_status != 200:
            return self._send(handler, self.orgs_status, {
                "message": "Resource not accessible by integration",
                "documentation_url": DOCS, "status": str(self.orgs_status)})
        query = parse_qs(parts.query)
        per_page = min(100, int((query.get("per_page") or ["30"])[0]))
        page = max(1, int((query.get("page") or ["1"])[0]))
        chunk = orgs[(page - 1) * per_page:page * per_page]
        links = []
        if page * per_page < len(orgs):
            links.append(f'<{self.url}/user/orgs?per_page={per_page}&page={page + 1}>; rel="next"')
        return self._send(handler, 200, [_org(o, 5000 + i) for i, o in enumerate(chunk)],
                          {"Link": ", ".join(links)} if links else {})

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: object,
              extra: Optional[Dict[str, str]] = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("X-GitHub-Media-Type", "github.v3; format=json")
        for key, value in (extra or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
