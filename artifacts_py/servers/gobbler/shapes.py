"""The JSON shapes of the registry's metadata files (``gobbler-protocol.md`` §2.3).

Field order here is Go's struct order, which is the order the files are
written in. Files read back from disk are trusted to have these shapes only
as far as the readers in ``registry`` check them.
"""

from __future__ import annotations

from typing import Dict, List, NotRequired, Optional, TypedDict


class LinkTarget(TypedDict):
    """A file inside a version: a link's parent or ancestor (§2.3.8)."""

    project: str
    asset: str
    version: str
    path: str


class Link(LinkTarget):
    """The ``link`` of a manifest entry; ``ancestor`` when the parent is a link itself."""

    ancestor: NotRequired[LinkTarget]


class ManifestEntry(TypedDict):
    """One ``..manifest`` entry: a file, an empty directory (md5 ``""``) or a link."""

    size: int
    md5sum: str
    link: NotRequired[Link]


Manifest = Dict[str, ManifestEntry]
LinkFile = Dict[str, Link]  # ``..links``: base name -> link


class Uploader(TypedDict):
    """One entry of ``uploaders`` in ``..permissions`` (§2.3.2)."""

    id: str
    asset: NotRequired[str]
    version: NotRequired[str]
    until: NotRequired[str]
    trusted: NotRequired[bool]


class Permissions(TypedDict):
    """``..permissions`` of a project or asset; ``uploaders`` may be null (§2.3.5)."""

    owners: List[str]
    uploaders: Optional[List[Uploader]]
    global_write: NotRequired[bool]


class PermissionsUpdate(TypedDict, total=False):
    """The ``permissions`` of a request: only the fields given replace the stored ones."""

    owners: List[str]
    uploaders: Optional[List[Uploader]]
    global_write: bool


class Summary(TypedDict):
    """``..summary`` of a version (§2.3.7)."""

    upload_user_id: str
    upload_start: str
    upload_finish: str
    on_probation: NotRequired[bool]


class RerouteChange(TypedDict):
    """One element of the ``changes`` that ``reroute_links`` answers with (§6.12)."""

    copy: bool
    path: str
    source: str
    usage: int
