"""The gypsum metadata index (``gypsum-protocol.md`` §7): fetch, search, validate.

SQLite databases and JSON schemas are fetched from configurable URLs
(:data:`DATABASE_URL`, :data:`SCHEMA_URL`, or ``url=``) through the one
transport, with HTTP errors raised (never an error page saved as a
database). Text search uses gypsum_client's query language, but tokenises
queries exactly as the indexer does (NFKD, diacritics removed, Unicode
letters and digits) and gives each clause of an OR its own sub-select.
Validation needs the optional ``jsonschema`` package
(``pip install 'artifacts-py[validate]'``).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
import time
import unicodedata
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .. import transport
from ..errors import DownloadError, GypsumError, InvalidArgumentError, OfflineError
from . import config
from .protocol import path_problem

log = logging.getLogger(__name__)

DATABASE_URL = "https://github.com/ArtifactDB/bioconductor-metadata-index/releases/download/latest/"
SCHEMA_URL = "https://artifactdb.github.io/bioconductor-metadata-index/"
# When the remote "modified" stamp was last read (ms since the epoch) and its value.
LAST_CHECK: Dict[str, Optional[float]] = {"req_time": None, "mod_time": None}
_CHECK_EVERY_MS = 3600 * 1000.0


def _get(url: str, dest: str) -> None:
    """Download ``url`` to ``dest`` (a temp file renamed into place); GypsumError on failure."""
    folder = os.path.dirname(dest) or "."
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".part-")
    os.close(fd)
    try:
        transport.download(url, temp, compute_sha256=False)
        os.replace(temp, dest)
    except OfflineError:
        raise
    except DownloadError as exc:
        raise GypsumError(f"gypsum metadata: {exc}", status=exc.status, url=url) from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _target(url: str, name: str, cache_dir: config.CacheDir,
            folder: str) -> Tuple[str, Optional[str]]:
    """The base URL (with a trailing ``/``) and ``<cache>/<folder>/<name>`` (None: no cache)."""
    problem = path_problem(name)
    if problem:
        raise GypsumError(f"gypsum metadata {name!r}: {problem}")
    root = config.cache_root(cache_dir)
    return url.rstrip("/") + "/", (None if root is None
                                   else os.path.join(root, folder, *name.split("/")))


def _fresh_temp(url: str, suffix: str) -> str:
    """``url`` downloaded to a new temporary file (``cache_dir=None``)."""
    fd, path = tempfile.mkstemp(suffix=suffix)
    os.close(fd)
    _get(url, path)
    return path


def _remote_modified(base: str) -> Optional[float]:
    """The remote ``modified`` stamp (memoised for an hour), or None if it cannot be read."""
    now = time.time() * 1000
    if LAST_CHECK["req_time"] is not None and LAST_CHECK["req_time"] + _CHECK_EVERY_MS >= now:
        return LAST_CHECK["mod_time"]
    try:
        res = transport.default().request("GET", base + "modified")
        if res.status != 200:
            raise GypsumError(f"HTTP {res.status}")
        stamp = float(res.text.strip())
    except (GypsumError, DownloadError, ValueError) as exc:
        log.warning("cannot check %smodified (%s); keeping the cached database", base, exc)
        return None
    LAST_CHECK["req_time"], LAST_CHECK["mod_time"] = now, stamp
    return stamp


def fetch_metadata_database(name: str = "bioconductor.sqlite3",
                            cache_dir: config.CacheDir = config.DEFAULT, overwrite: bool = False,
                            url: Optional[str] = None) -> str:
    """The SQLite metadata index ``name``, downloaded from ``url`` (default :data:`DATABASE_URL`).

    Cached as ``<cache>/databases/<name>`` with ``<name>.modified``; the
    cached copy is used while the remote ``modified`` stamp is unchanged
    (checked at most hourly) and also when the check fails (with a warning).
    ``cache_dir=None`` downloads to a new temporary file.
    """
    base, path = _target(url or DATABASE_URL, name, cache_dir, "databases")
    if path is None:
        return _fresh_temp(base + name, ".sqlite3")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    import filelock

    with filelock.FileLock(path + ".LOCK"):
        if os.path.exists(path) and not overwrite:
            try:
                with open(path + ".modified", encoding="utf-8") as handle:
                    old = float(handle.read().strip())
            except (OSError, ValueError):
                old = None
            new = _remote_modified(base)
            if new is None or new == old:
                return path
        _get(base + "modified", path + ".modified")
        _get(base + name, path)
        with open(path + ".modified", encoding="utf-8") as handle:
            text = handle.read().strip()
    try:
        LAST_CHECK["req_time"], LAST_CHECK["mod_time"] = time.time() * 1000, float(text)
    except ValueError:
        raise GypsumError(f"{base}modified is not a number ({text[:40]!r})") from None
    return path


def fetch_metadata_schema(name: str = "bioconductor/v1.json",
                          cache_dir: config.CacheDir = config.DEFAULT, overwrite: bool = False,
                          url: Optional[str] = None) -> str:
    """The JSON schema ``name`` from ``url`` (default :data:`SCHEMA_URL`), cached as ``<cache>/schemas/<name>``."""
    base, path = _target(url or SCHEMA_URL, name, cache_dir, "schemas")
    if path is None:
        return _fresh_temp(base + name, ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    import filelock

    with filelock.FileLock(path + ".LOCK"):
        if overwrite or not os.path.exists(path):
            _get(base + name, path)
    return path


def validate_metadata(metadata: Union[str, Dict[str, Any]], schema: str,
                      stringify: Optional[bool] = None) -> bool:
    """Check ``metadata`` (a dict or JSON text) against the JSON schema file ``schema``.

    Returns True; raises :class:`~artifacts_py.errors.InvalidArgumentError`
    (a ValueError) ``"Metadata validation failed: ..."`` otherwise. Needs the
    optional ``jsonschema`` package.
    """
    try:
        import jsonschema
    except ImportError:
        raise GypsumError("validate_metadata needs the optional 'jsonschema' package: "
                          "pip install 'artifacts-py[validate]'") from None
    if stringify is None:
        stringify = not isinstance(metadata, str)
    text = json.dumps(metadata) if stringify else metadata
    try:
        with open(schema, encoding="utf-8") as handle:
            schema_doc = json.load(handle)
        document = json.loads(text) if isinstance(text, str) else text
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"Metadata validation failed: cannot read "
                                   f"{'the schema ' + schema if isinstance(exc, OSError) else 'the metadata'}"
                                   f" ({exc})") from None
    try:
        jsonschema.validate(instance=document, schema=schema_doc)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise InvalidArgumentError(f"Metadata validation failed: {where}: {exc.message}") from None
    except jsonschema.SchemaError as exc:
        raise InvalidArgumentError(f"Metadata validation failed: {schema} is not a valid JSON "
                                   f"schema ({exc.message})") from None
    return True


# --------------------------------------------------------------------------
# Text search
# --------------------------------------------------------------------------

class GypsumSearchClause:
    """A node of a text query: ``text``, ``and``, ``or`` or ``not``; combine with ``&``, ``|``, ``~``."""

    def __init__(self, type: str, text: Optional[str] = None, field: Optional[str] = None,
                 partial: bool = False, children: Optional[List["GypsumSearchClause"]] = None,
                 child: Optional["GypsumSearchClause"] = None) -> None:
        if type not in ("text", "and", "or", "not"):
            raise InvalidArgumentError(f"search clause type {type!r} must be text, and, or, not")
        self.type, self.text, self.field, self.partial = type, text, field, partial
        self.children = list(children or [])
        self.child = child

    def __and__(self, other: "GypsumSearchClause") -> "GypsumSearchClause":
        return GypsumSearchClause("and", children=[self, other])

    def __or__(self, other: "GypsumSearchClause") -> "GypsumSearchClause":
        return GypsumSearchClause("or", children=[self, other])

    def __invert__(self) -> "GypsumSearchClause":
        return GypsumSearchClause("not", child=self)

    def __repr__(self) -> str:
        if self.type == "text":
            return f"text({self.text!r}, field={self.field!r}, partial={self.partial})"
        if self.type == "not":
            return f"not({self.child!r})"
        return f"{self.type}({', '.join(map(repr, self.children))})"


def define_text_query(text: str, field: Optional[str] = None,
                      partial: bool = False) -> GypsumSearchClause:
    """A text clause: documents holding the token(s) of ``text`` (in ``field``, if given).

    With ``partial``, ``%`` in ``text`` matches any run of characters.
    """
    return GypsumSearchClause("text", text=text, field=field, partial=partial)


def tokenize(text: str, partial: bool = False) -> List[str]:
    """Tokens as the indexer makes them: NFKD, no diacritics, lower case, split at any
    character that is not a letter, digit, private-use character or ``-`` (or ``%``
    when ``partial``)."""
    out: List[str] = []
    current: List[str] = []
    for char in unicodedata.normalize("NFKD", text):
        kind = unicodedata.category(char)
        if kind == "Mn":
            continue  # a combining mark: the diacritic of the previous letter
        if kind[0] in "LN" or kind == "Co" or char == "-" or (partial and char == "%"):
            current.append(char.lower())
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    return list(dict.fromkeys(out))


def _sanitize(query: Union[str, Sequence[str], GypsumSearchClause]) -> Optional[GypsumSearchClause]:
    if isinstance(query, str):
        query = define_text_query(query)
    elif not isinstance(query, GypsumSearchClause):
        words = list(query)
        if not words:
            raise InvalidArgumentError("search query: an empty list matches nothing; give at "
                                       "least one word")
        query = (define_text_query(words[0]) if len(words) == 1
                 else GypsumSearchClause("and", children=[define_text_query(w) for w in words]))
    if query.type == "not":
        child = _sanitize(query.child) if query.child is not None else None
        return None if child is None else GypsumSearchClause("not", child=child)
    if query.type in ("and", "or"):
        kept = [c for c in (_sanitize(c) for c in query.children) if c is not None]
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else GypsumSearchClause(query.type, children=kept)
    tokens = tokenize(query.text or "", query.partial)
    if not tokens:
        return None
    clauses = [GypsumSearchClause("text", text=t, field=query.field, partial=query.partial)
               for t in tokens]
    return clauses[0] if len(clauses) == 1 else GypsumSearchClause("and", children=clauses)


def _sql(query: GypsumSearchClause, params: Dict[str, str]) -> str:
    if query.type == "text":
        token = f"p{len(params)}"
        params[token] = query.text or ""
        match = f"tokens.token {'LIKE' if query.partial else '='} :{token}"
        join = ""
        if query.field is not None:
            field = f"p{len(params)}"
            params[field] = query.field
            join = " LEFT JOIN fields ON fields.fid = links.fid"
            match += f" AND fields.field = :{field}"
        return (f"paths.pid IN (SELECT links.pid FROM links LEFT JOIN tokens ON "
                f"tokens.tid = links.tid{join} WHERE {match})")
    if query.type == "not":
        assert query.child is not None
        return f"NOT ({_sql(query.child, params)})"
    glue = " AND " if query.type == "and" else " OR "
    return "(" + glue.join(_sql(c, params) for c in query.children) + ")"


def search_metadata_text(path: str, query: Union[str, Sequence[str], GypsumSearchClause],
                         latest: bool = True, include_metadata: bool = True) -> List[Dict[str, Any]]:
    """Documents of the SQLite index at ``path`` that match ``query``.

    Each result has ``project``, ``asset``, ``version``, ``path``, plus
    ``metadata`` (parsed) with ``include_metadata`` and ``latest`` (0/1)
    when ``latest`` is false (otherwise only latest versions are searched).
    A plain string or a list of strings is an AND of text clauses.
    """
    clause = _sanitize(query)
    params: Dict[str, str] = {}
    where = [_sql(clause, params)] if clause is not None else []
    columns = ["versions.project AS project", "versions.asset AS asset",
               "versions.version AS version", "paths.path AS path"]
    if include_metadata:
        columns.append("json_extract(paths.metadata, '$') AS metadata")
    if latest:
        where.append("versions.latest = 1")
    else:
        columns.append("versions.latest AS latest")
    stmt = (f"SELECT {', '.join(columns)} FROM paths LEFT JOIN versions ON "
            f"paths.vid = versions.vid" + (f" WHERE {' AND '.join(where)}" if where else ""))
    if not os.path.isfile(path):
        raise GypsumError(f"search_metadata_text: {path} does not exist; get it with "
                          "fetch_metadata_database()")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in conn.execute(stmt, params)]
    except sqlite3.DatabaseError as exc:
        hint = (f"; the index stores JSONB, which needs SQLite >= 3.45 (this Python has "
                f"{sqlite3.sqlite_version})" if "JSON" in str(exc) else "")
        raise GypsumError(f"search_metadata_text: {path}: {exc}{hint}") from None
    finally:
        conn.close()
    if include_metadata:
        for row in rows:
            row["metadata"] = json.loads(row["metadata"]) if row["metadata"] is not None else None
    return rows


__all__: Tuple[str, ...] = (
    "fetch_metadata_database", "fetch_metadata_schema", "validate_metadata",
    "GypsumSearchClause", "define_text_query", "search_metadata_text", "tokenize",
    "DATABASE_URL", "SCHEMA_URL", "LAST_CHECK",
)
