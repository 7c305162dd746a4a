"""``artifacts-gypsum``: a gypsum-compatible registry service (``gypsum-protocol.md``).

Flags as in the product spec §6b; run ``artifacts-gypsum --help`` for examples.
The store is a local directory (``--store``) or an S3 bucket (``--s3-endpoint``
and ``--s3-bucket``, needs ``pip install 'artifacts-py[s3]'``).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import threading
from typing import NoReturn, Optional, Sequence

from artifacts_py.servers.gypsum.actions import Service
from artifacts_py.servers.gypsum.actions.versions import purge_logs
from artifacts_py.servers.gypsum.auth import Auth
from artifacts_py.servers.gypsum.errors import StoreError
from artifacts_py.servers.gypsum.github import GitHub
from artifacts_py.servers.gypsum.handler import GypsumServer
from artifacts_py.servers.gypsum.store import Store

PROG = "artifacts-gypsum"
log = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  # local directory store, admins alice and the org my-lab, on port 8787
  artifacts-gypsum --store /srv/gypsum --admin alice,my-lab

  # any S3-compatible store (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)
  artifacts-gypsum --s3-endpoint http://127.0.0.1:8333 --s3-bucket gypsum --admin alice

  # GitHub Enterprise, any free port
  artifacts-gypsum --store ./store --github-api https://ghe.example.org/api/v3 --port 0
"""


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("artifacts-py")
    except Exception:  # not installed (running from a checkout)
        return "unknown"


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A gypsum-compatible registry service over a local directory or any "
                    "S3-compatible object store.")
    p.add_argument("-V", "--version", action="version", version=f"{PROG} {_version()}")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8787,
                   help="port to listen on (default 8787; 0 = any free port)")
    p.add_argument("--store", metavar="DIR", help="local-directory store (must exist)")
    p.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint, e.g. http://127.0.0.1:8333")
    p.add_argument("--s3-bucket", metavar="B", help="S3 bucket")
    p.add_argument("--s3-region", default="us-east-1", help="S3 signing region (default us-east-1)")
    p.add_argument("--s3-access-key", help="S3 access key (default: $AWS_ACCESS_KEY_ID)")
    p.add_argument("--s3-secret-key", help="S3 secret key (default: $AWS_SECRET_ACCESS_KEY)")
    p.add_argument("--s3-addressing", choices=("path", "virtual"), default="path",
                   help="S3 addressing style (default path: works with IP endpoints)")
    p.add_argument("--s3-public-endpoint", metavar="URL",
                   help="S3 endpoint as clients reach it, for upload URLs (default --s3-endpoint)")
    p.add_argument("--s3-public-read-key", help="read-only key given out by /credentials/s3-api")
    p.add_argument("--s3-public-read-secret", help="its secret")
    p.add_argument("--admin", default="", metavar="LOGIN[,LOGIN...]",
                   help="GitHub logins or organisations that are administrators")
    p.add_argument("--github-api", default="https://api.github.com", metavar="URL",
                   help="GitHub API base (default https://api.github.com)")
    p.add_argument("--github-app-id", help="OAuth app id for /credentials/github-app")
    p.add_argument("--github-app-secret", help="OAuth app secret for /credentials/github-app")
    p.add_argument("--public-url", metavar="URL",
                   help="this service's URL as clients reach it (local store upload URLs; "
                        "default: from the request's Host header)")
    p.add_argument("--presign-expiry", type=int, default=3600, metavar="SECONDS",
                   help="lifetime of upload URLs (default 3600)")
    p.add_argument("--log-retention-days", type=float, default=7.0,
                   help="age at which ..logs entries are purged, daily (default 7)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(2)


def make_store(args: argparse.Namespace) -> Store:
    """The store the flags ask for (exits with a one-line error when impossible)."""
    if bool(args.store) == bool(args.s3_endpoint or args.s3_bucket):
        fail("give either --store DIR or --s3-endpoint URL with --s3-bucket B")
    if args.store:
        if not os.path.isdir(args.store):
            fail(f"store directory {args.store} does not exist (create it first)")
        from artifacts_py.servers.gypsum.store_local import LocalStore
        return LocalStore(args.store)
    if not (args.s3_endpoint and args.s3_bucket):
        fail("--s3-endpoint and --s3-bucket go together")
    key = args.s3_access_key or os.environ.get("AWS_ACCESS_KEY_ID")
    secret = args.s3_secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        fail("S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
             "or pass --s3-access-key/--s3-secret-key")
    try:
        from artifacts_py.servers.gypsum.store_s3 import S3Store
    except ImportError:
        fail("the S3 store needs botocore: pip install 'artifacts-py[s3]'")
    public = None
    if args.s3_public_read_key and args.s3_public_read_secret:
        public = (args.s3_public_read_key, args.s3_public_read_secret)
    store = S3Store(args.s3_endpoint, args.s3_bucket, key, secret, region=args.s3_region,
                    addressing=args.s3_addressing, public_endpoint=args.s3_public_endpoint,
                    public_credentials=public)
    try:
        store.check()
    except StoreError as exc:
        fail(str(exc))
    return store


def start_purge_thread(service: Service, stop: threading.Event) -> None:
    """Purge old ``..logs`` entries now and then every 24 h (§4.20)."""
    def loop() -> None:
        while True:
            try:
                purge_logs(service.store, service.log_retention_days)
            except Exception as exc:  # logged only; the service keeps running
                log.warning("log purge failed: %s", exc)
            if stop.wait(86400.0):
                return
    threading.Thread(target=loop, name="gypsum-purge", daemon=True).start()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point ``artifacts-gypsum``."""
    args = parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        fail(f"--port must be between 0 and 65535, not {args.port}")
    if args.presign_expiry < 1:
        fail("--presign-expiry must be at least 1 second")
    store = make_store(args)
    github = GitHub(args.github_api)
    app = (args.github_app_id, args.github_app_secret) \
        if args.github_app_id and args.github_app_secret else None
    service = Service(store, Auth(store, github, args.admin.split(",")),
                      presign_expiry=args.presign_expiry, github_app=app,
                      log_retention_days=args.log_retention_days)
    try:
        server = GypsumServer((args.host, args.port), service, public_url=args.public_url,
                              verbose=args.verbose)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {args.port} on {args.host} is already in use (choose another "
                 "with --port, or --port 0 for any free port)")
        fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
    host, port = str(server.server_address[0]), server.server_address[1]
    print(f"{PROG} listening on http://{host}:{port}", flush=True)
    stop = threading.Event()
    start_purge_thread(service, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
        github.close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
