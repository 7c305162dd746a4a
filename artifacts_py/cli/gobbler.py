"""``artifacts serve`` and ``artifacts gobbler ...``: run a Gobbler service, administer one.

With these, ``serve -> gobbler create-project -> publish -> add -> fetch``
needs nothing but ``artifacts`` commands. The admin subcommands are the
Gobbler client's actions (:mod:`artifacts_py.gobbler.client`); the staging
directory comes from the service's ``/info`` unless ``--staging`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

from .. import settings
from ..errors import GobblerError
from .common import Commands, print_json

Action = Callable[[argparse.Namespace, str], Dict[str, Any]]


def serve_home() -> Path:
    """Where ``artifacts serve`` keeps its registry and staging by default.

    User data, not cache: a registry is source data that ``gc`` and cache
    cleaners must never touch.
    """
    import platformdirs

    return Path(platformdirs.user_data_dir("artifacts-py", appauthor=False)) / "gobbler-server"


# ------------------------------------------------------------------- serve

class _Announcer(io.TextIOBase):
    """stdout for the server: its ``listening on URL`` line becomes our announcement."""

    _LISTENING = re.compile(r"listening on (http://\S+)\s*$")

    def __init__(self, out: TextIO, announce: Callable[[str], str]) -> None:
        self.out, self.announce, self.pending, self.done = out, announce, "", False

    def write(self, text: str) -> int:
        if self.done:
            self.out.write(text)
            return len(text)
        self.pending += text
        while "\n" in self.pending and not self.done:
            line, self.pending = self.pending.split("\n", 1)
            found = self._LISTENING.search(line)
            if found:
                self.done = True
                line = self.announce(found.group(1))
            self.out.write(line + "\n")
        if self.done and self.pending:
            self.out.write(self.pending)
            self.pending = ""
        self.out.flush()
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def serve_help(ours: argparse.ArgumentParser) -> int:
    """``artifacts serve --help``: our options, then the server's own flags."""
    from ..servers.gobbler import server

    ours.print_help()
    theirs = io.StringIO()
    with contextlib.redirect_stdout(theirs), contextlib.suppress(SystemExit):
        server.parse_args(["--help"])
    flags = theirs.getvalue().split("options:", 1)[-1].rstrip()
    flags = flags.replace("\n  -h, --help            show this help message and exit", "")
    print(f"\nflags of artifacts-gobbler (passed through):{flags}")
    return 0


def cmd_serve(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Run the embedded server with a registry and staging in user data by default."""
    import getpass

    from ..servers.gobbler import server

    argv = list(extra)
    names = {a.split("=")[0].lstrip("-") for a in argv if a.startswith("-")}
    base = serve_home()
    if "registry" not in names:
        (base / "registry").mkdir(parents=True, exist_ok=True)
        argv += ["-registry", str(base / "registry")]
    if "staging" not in names:
        (base / "staging").mkdir(parents=True, exist_ok=True)
        os.chmod(base / "staging", 0o1777)  # every user writes requests, none deletes others'
        argv += ["-staging", str(base / "staging")]
    if "admin" not in names:
        argv += ["-admin", getpass.getuser()]
    # The server's own parser prints argparse's usage block; say it in one line.
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            flags = server.parse_args(argv)
    except SystemExit as e:
        lines = [ln for ln in captured.getvalue().splitlines() if ln.strip()]
        why = lines[-1].split(": error: ", 1)[-1] if lines else "bad arguments"
        print(f"artifacts serve: error: {why} (see `artifacts serve --help`)", file=sys.stderr)
        return 2 if e.code else 0
    shown = {"registry": os.path.abspath(flags.registry),
             "staging": os.path.abspath(flags.staging),
             "admins": [a for a in flags.admin.split(",") if a]}

    def announce(url: str) -> str:
        if args.json:
            return json.dumps({"url": url, **shown})
        return "\n".join([
            f"artifacts serve: Gobbler service listening on {url}",
            f"  registry  {shown['registry']}",
            f"  staging   {shown['staging']}",
            f"  admins    {', '.join(shown['admins']) or '(none)'}",
            f"next: export {settings.GOBBLER_URL}={url}; "
            "artifacts gobbler create-project NAME; Ctrl-C stops the service"])

    with contextlib.redirect_stdout(_Announcer(sys.stdout, announce)):
        return int(server.main(argv) or 0)


# ------------------------------------------------------------------ admin

def _url(args: argparse.Namespace) -> str:
    url = args.url or settings.gobbler_url()
    if not url:
        raise GobblerError(f"no Gobbler service URL: pass --url URL or set "
                           f"{settings.GOBBLER_URL} (`artifacts serve` prints it)")
    return str(url).rstrip("/")


def _coords(text: str, parts: int, what: str) -> List[str]:
    """``P/A/V`` (or ``P/A``) split and checked."""
    got = text.split("/")
    if len(got) != parts or not all(got):
        raise ValueError(f"{text!r}: expected {what}")
    return got


def _uploaders(args: argparse.Namespace) -> Optional[List[Dict[str, Any]]]:
    return [{"id": u} for u in args.uploader] if args.uploader else None


def _create_project(args: argparse.Namespace, url: str) -> Dict[str, Any]:
    from ..gobbler import client

    client.create_project(args.project, args.staging, url, owners=args.owner or None,
                          uploaders=_uploaders(args),
                          global_write=True if args.global_write else None)
    return {"action": "create-project", "project": args.project,
            "text": f"created project {args.project}"}


def _remove_project(args: argparse.Namespace, url: str) -> Dict[str, Any]:
    from ..gobbler import client

    client.remove_project(args.project, args.staging, url)
    return {"action": "remove-project", "project": args.project,
            "text": f"removed project {args.project}"}


def _remove_asset(args: argparse.Namespace, url: str) -> Dict[str, Any]:
    from ..gobbler import client

    project, asset = _coords(args.asset, 2, "PROJECT/ASSET")
    client.remove_asset(project, asset, args.staging, url, force=args.force)
    return {"action": "remove-asset", "project": project, "asset": asset,
            "text": f"removed asset {project}/{asset}"}


def _remove_version(args: argparse.Namespace, url: str) -> Dict[str, Any]:
    from ..gobbler import client

    project, asset, version = _coords(args.version, 3, "PROJECT/ASSET/VERSION")
    client.remove_version(project, asset, version, args.staging, url, force=args.force)
    return {"action": "remove-version", "project": project, "asset": asset,
            "version": version, "text": f"removed version {project}/{asset}/{version}"}


def _set_permissions(args: argparse.Namespace, url: str) -> Dict[str, Any]:
    from ..gobbler import client

    project, _, asset = args.target.partition("/")
    if not project or "/" in asset:
        raise ValueError(f"{args.target!r}: expected PROJECT or PROJECT/ASSET")
    if args.global_write is not None and asset:
        raise ValueError("--global-write/--no-global-write is a project-level permission")
    client.set_permissions(project, None, args.staging, url, asset=asset or None,
                           owners=args.owner or None, uploaders=_uploaders(args),
                           global_write=args.global_write, append=not args.replace)
    now = client.fetch_permissions(project, url=url, asset=asset or None)
    return {"action": "set-permissions", "project": project, "asset": asset or None,
            "permissions": now, "text": f"permissions of {args.target}: "
            f"owners {', '.join(now.get('owners') or []) or '(none)'}; uploaders "
            f"{', '.join(str(u.get('id')) for u in now.get('uploaders') or []) or '(none)'}"}


def _probation(verb: str) -> Action:
    def run(args: argparse.Namespace, url: str) -> Dict[str, Any]:
        from ..gobbler import client

        project, asset, version = _coords(args.version, 3, "PROJECT/ASSET/VERSION")
        if verb == "approve":
            client.approve_probation(project, asset, version, args.staging, url)
        else:
            client.reject_probation(project, asset, version, args.staging, url,
                                    force=args.force)
        done = "approved" if verb == "approve" else "rejected (deleted)"
        return {"action": verb, "project": project, "asset": asset, "version": version,
                "text": f"{done} probational version {project}/{asset}/{version}"}
    return run


def _refresh_latest(args: argparse.Namespace, url: str) -> Dict[str, Any]:
    from ..gobbler import client

    project, asset = _coords(args.asset, 2, "PROJECT/ASSET")
    latest = client.refresh_latest(project, asset, args.staging, url)
    return {"action": "refresh-latest", "project": project, "asset": asset, "latest": latest,
            "text": f"latest version of {project}/{asset}: {latest or '(none)'}"}


def _refresh_usage(args: argparse.Namespace, url: str) -> Dict[str, Any]:
    from ..gobbler import client

    total = client.refresh_usage(args.project, args.staging, url)
    return {"action": "refresh-usage", "project": args.project, "total": total,
            "text": f"project {args.project} uses {total} bytes"}


def _list(args: argparse.Namespace, url: str) -> Dict[str, Any]:
    from ..gobbler import client

    parts = args.path.split("/") if args.path else []
    if len(parts) > 2 or not all(parts):
        raise ValueError(f"{args.path!r}: expected nothing, PROJECT or PROJECT/ASSET")
    if not parts:
        items, kind = client.list_projects(url=url), "projects"
    elif len(parts) == 1:
        items, kind = client.list_assets(parts[0], url=url), "assets"
    else:
        items, kind = client.list_versions(parts[0], parts[1], url=url), "versions"
    return {"action": "list", "path": args.path or "", kind: sorted(items),
            "text": "\n".join(sorted(items))}


def _info(args: argparse.Namespace, url: str) -> Dict[str, Any]:
    from ..gobbler import client

    info = client.service_info(url)
    return {"action": "info", "url": url, **info,
            "text": "\n".join(f"{k:<9} {v}" for k, v in {"url": url, **info}.items())}


def _runner(action: Action, name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            result = action(args, _url(args))
        except GobblerError as e:  # the client names its Python function: say the command
            said = re.sub(r"^gobbler [a-z_]+", f"artifacts gobbler {name}", str(e))
            raise GobblerError(said, status=e.status, reason=e.reason, url=e.url) from None
        text = result.pop("text")
        if args.json:
            print_json(result)
        elif text:
            print(text)
        return 0
    return run


def register(c: Commands) -> None:
    """Add ``serve`` and ``gobbler ...`` to the table."""
    sp = c.add("serve", "start the embedded Gobbler-compatible service on loopback; prints its "
               "URL, registry and staging (other flags go to artifacts-gobbler: -port, "
               "-registry, -staging, -admin, ...)", f"""\
  artifacts serve -port 8080
  artifacts serve -port 0 --json   # one JSON line: url, registry, staging, admins
The registry and staging live in {serve_home()} unless -registry/-staging say otherwise.""",
               lambda args: 0, json_out=True, toml=False)
    sp.set_defaults(func=None)

    sp = c.add("gobbler", "administer a Gobbler service: projects, permissions, probation",
               """\
  artifacts gobbler create-project demo --url http://127.0.0.1:8080
  artifacts gobbler approve demo/counts/v2""", lambda args: 0, toml=False)
    admin = Commands(sp.add_subparsers(dest="admin_command", metavar="ACTION", required=True))

    def action(name: str, help: str, examples: str, fn: Action) -> argparse.ArgumentParser:
        p = admin.add(name, help, examples, _runner(fn, name), json_out=True, toml=False)
        p.add_argument("--url", help=f"the service's URL (default ${settings.GOBBLER_URL})")
        p.add_argument("--staging", help="its staging directory as seen from here (default: "
                       "from the service's /info)")
        return p

    p = action("create-project", "create a project (admins only)", """\
  artifacts gobbler create-project demo
  artifacts gobbler create-project demo --owner alice --uploader bob""", _create_project)
    p.add_argument("project", help="the new project's name")
    p.add_argument("--owner", action="extend", nargs="+", metavar="USER",
                   help="owners (default: you)")
    p.add_argument("--uploader", action="extend", nargs="+", metavar="USER",
                   help="users who may upload new versions")
    p.add_argument("--global-write", action="store_true", help="anyone may upload")

    p = action("remove-project", "delete a project and everything in it (admins only)",
               "  artifacts gobbler remove-project demo", _remove_project)
    p.add_argument("project", help="the project to delete")

    p = action("remove-asset", "delete an asset and all its versions (admins only)",
               "  artifacts gobbler remove-asset demo/counts", _remove_asset)
    p.add_argument("asset", metavar="PROJECT/ASSET", help="the asset to delete")
    p.add_argument("--force", action="store_true", help="even if its files are unreadable")

    p = action("remove-version", "delete one version (admins only)",
               "  artifacts gobbler remove-version demo/counts/v1", _remove_version)
    p.add_argument("version", metavar="PROJECT/ASSET/VERSION", help="the version to delete")
    p.add_argument("--force", action="store_true", help="even if its files are unreadable")

    p = action("set-permissions", "add (or, with --replace, set) owners and uploaders", """\
  artifacts gobbler set-permissions demo --uploader bob
  artifacts gobbler set-permissions demo/counts --owner alice --replace""", _set_permissions)
    p.add_argument("target", metavar="PROJECT[/ASSET]", help="a project, or one of its assets")
    p.add_argument("--owner", action="extend", nargs="+", metavar="USER",
                   help="owners to add (or set, with --replace)")
    p.add_argument("--uploader", action="extend", nargs="+", metavar="USER",
                   help="uploaders to add (or set, with --replace)")
    p.add_argument("--global-write", action="store_true", default=None,
                   help="anyone may upload to the project")
    p.add_argument("--no-global-write", action="store_false", dest="global_write",
                   default=None, help="only owners and uploaders may upload")
    p.add_argument("--replace", action="store_true",
                   help="replace the owners/uploaders given instead of adding to them")

    for verb, what in (("approve", "make a probational version official"),
                       ("reject", "delete a probational version")):
        p = action(verb, f"{what} (admins and project owners)",
                   f"  artifacts gobbler {verb} demo/counts/v2", _probation(verb))
        p.add_argument("version", metavar="PROJECT/ASSET/VERSION",
                       help="the probational version")
        if verb == "reject":
            p.add_argument("--force", action="store_true",
                           help="even if its files are unreadable")

    p = action("refresh-latest", "recompute an asset's latest version (admins only)",
               "  artifacts gobbler refresh-latest demo/counts", _refresh_latest)
    p.add_argument("asset", metavar="PROJECT/ASSET", help="the asset")

    p = action("refresh-usage", "recompute a project's disk usage (admins only)",
               "  artifacts gobbler refresh-usage demo", _refresh_usage)
    p.add_argument("project", help="the project")

    p = action("list", "list projects, a project's assets, or an asset's versions", """\
  artifacts gobbler list
  artifacts gobbler list demo/counts --json""", _list)
    p.add_argument("path", nargs="?", metavar="PROJECT[/ASSET]",
                   help="what to list inside (default: the projects)")

    action("info", "print the service's registry and staging paths",
           "  artifacts gobbler info --url http://127.0.0.1:8080", _info)
