"""download(): resume, restart, retries, errors, hashing — against a real faulty server."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from artifacts_py import settings
from artifacts_py.transport import DownloadResult, Transport, download
from artifacts_py.errors import DownloadError, HashMismatchError, OfflineError
from artifacts_py.treehash import blob_header
from httpserver import FaultyServer

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
CUT = 100_000  # where truncated/stalled responses stop


def fast_session(retries: int = 3):
    """Same policy as the default session, with tiny backoff to keep tests quick."""
    return Transport(retries=retries, backoff_factor=0.01)


def ranges(server: FaultyServer, path: str) -> list:
    return [r.headers.get("Range") for r in server.requests_for(path)]


def test_plain_download(http_server, tmp_path):
    url = http_server.add("/a.bin", DATA)
    dest = tmp_path / "a.bin"
    result = download(url, dest, sha256=SHA.upper())
    assert result == DownloadResult(SHA, len(DATA), [])
    assert dest.read_bytes() == DATA
    assert http_server.requests[0].headers["User-Agent"].startswith("artifacts-py/")


def test_large_bodies_are_read_in_place_and_the_connection_is_kept(http_server, tmp_path):
    """Bodies of known length are read into one reused buffer (no new bytes per chunk),
    then the connection serves the next download; a body cut short is resumed."""
    big = os.urandom(3 * (1 << 20) + 123)  # several CHUNKs and a partial one
    url = http_server.add("/big.bin", big)
    cut = http_server.add("/cut.bin", big, truncate_first=1, truncate_at=(1 << 20) + 7)
    t = fast_session()
    for name in ("one", "two"):
        got = download(url, tmp_path / name, transport=t, hashers=(hashlib.md5,))
        assert (tmp_path / name).read_bytes() == big
        assert got.digests[0].hexdigest() == hashlib.md5(big).hexdigest()
    assert len({r.peer for r in http_server.requests}) == 1  # kept alive across both
    assert download(cut, tmp_path / "cut", transport=t).sha256 == hashlib.sha256(big).hexdigest()
    assert ranges(http_server, "/cut.bin") == [None, f"bytes={(1 << 20) + 7}-"]


def test_sha256_mismatch_deletes_dest(http_server, tmp_path):
    url = http_server.add("/a.bin", DATA)
    dest = tmp_path / "a.bin"
    with pytest.raises(HashMismatchError) as exc:
        download(url, dest, sha256="0" * 64)
    assert url in str(exc.value) and "0" * 64 in str(exc.value) and SHA in str(exc.value)
    assert exc.value.actual == SHA
    assert not dest.exists()


def test_truncated_body_resumes_with_range(http_server, tmp_path):
    url = http_server.add("/t.bin", DATA, truncate_first=1, truncate_at=CUT,
                          headers={"ETag": '"v1"'})
    dest = tmp_path / "t.bin"
    assert download(url, dest, sha256=SHA).size == len(DATA)
    assert dest.read_bytes() == DATA
    assert ranges(http_server, "/t.bin") == [None, f"bytes={CUT}-"]
    # The resume is conditional on the file being unchanged.
    assert http_server.requests_for("/t.bin")[1].headers["If-Range"] == '"v1"'


def test_server_ignoring_range_restarts_from_zero(http_server, tmp_path):
    md5 = hashlib.md5
    url = http_server.add("/i.bin", DATA, truncate_first=1, truncate_at=CUT, ignore_range=True)
    dest = tmp_path / "i.bin"
    result = download(url, dest, sha256=SHA, hashers=[md5])
    assert dest.read_bytes() == DATA
    assert ranges(http_server, "/i.bin") == [None, f"bytes={CUT}-"]
    # Extra hashers were re-created for the restart, not fed the first CUT bytes twice.
    assert result.digests[0].hexdigest() == md5(DATA).hexdigest()


def test_lying_content_range_starts_over(http_server, tmp_path):
    url = http_server.add("/l.bin", DATA, truncate_first=3, truncate_at=CUT, lie_range=True)
    dest = tmp_path / "l.bin"
    download(url, dest, sha256=SHA)
    assert dest.read_bytes() == DATA
    # After the lie, ranges are never trusted again: the retry after the next
    # truncation starts from zero instead of asking for a range.
    assert ranges(http_server, "/l.bin") == [None, f"bytes={CUT}-", None, None]


def test_stalled_body_times_out_and_resumes(http_server, tmp_path):
    url = http_server.add("/s.bin", DATA, stall_after=CUT, stall_first=1)
    dest = tmp_path / "s.bin"
    start = time.monotonic()
    download(url, dest, sha256=SHA, transport=Transport(timeout=0.5))
    assert time.monotonic() - start < 5
    assert dest.read_bytes() == DATA
    assert ranges(http_server, "/s.bin") == [None, f"bytes={CUT}-"]


def test_gives_up_after_attempts_and_removes_partial_file(http_server, tmp_path):
    url = http_server.add("/g.bin", DATA, truncate_first=99, truncate_at=CUT, ignore_range=True)
    dest = tmp_path / "g.bin"
    with pytest.raises(DownloadError) as exc:
        download(url, dest, attempts=3)
    assert http_server.count("/g.bin") == 3
    assert exc.value.url == url and "3 attempts" in str(exc.value)
    assert not dest.exists()


def test_server_errors_are_retried(http_server, tmp_path):
    url = http_server.add("/r.bin", DATA, fail_first=2, status=500)
    dest = tmp_path / "r.bin"
    download(url, dest, sha256=SHA, transport=fast_session())
    assert dest.read_bytes() == DATA
    assert http_server.count("/r.bin") == 3


def test_429_retry_after_is_honoured(http_server, tmp_path):
    url = http_server.add("/429.bin", DATA, fail_first=1, status=429, retry_after=1)
    start = time.monotonic()
    download(url, tmp_path / "x", sha256=SHA, transport=fast_session())
    assert time.monotonic() - start >= 0.95
    assert http_server.count("/429.bin") == 2


def test_404_fails_at_once_with_clear_message(http_server, tmp_path):
    url = http_server.url("/missing.bin")
    with pytest.raises(DownloadError) as exc:
        download(url, tmp_path / "x", transport=fast_session())
    msg = str(exc.value)
    assert f"{url}: HTTP 404" in msg and "\n" not in msg
    assert exc.value.url == url
    assert http_server.count("/missing.bin") == 1
    assert not (tmp_path / "x").exists()


def test_persistent_503_fails_after_retry_budget(http_server, tmp_path):
    url = http_server.add("/503.bin", DATA, status=503)
    with pytest.raises(DownloadError) as exc:
        download(url, tmp_path / "x", transport=fast_session(retries=2))
    msg = str(exc.value)
    assert f"{url}: HTTP 503 Service Unavailable" in msg and "try again later" in msg
    assert http_server.count("/503.bin") == 3  # first try + 2 retries


def test_wrong_bytes_fail_the_hash(http_server, tmp_path):
    url = http_server.add("/w.bin", DATA, wrong_bytes=True)
    with pytest.raises(HashMismatchError):
        download(url, tmp_path / "w.bin", sha256=SHA)
    assert not (tmp_path / "w.bin").exists()


def test_connection_refused_is_quick_and_readable(tmp_path):
    # A bound socket that never listens: nothing can take the port meanwhile.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/x.bin"
        start = time.monotonic()
        with pytest.raises(DownloadError) as exc:
            download(url, tmp_path / "x", transport=fast_session(retries=1))
    assert time.monotonic() - start < 3
    msg = str(exc.value)
    assert url in msg and "refused" in msg.lower()
    assert "object at 0x" not in msg and "ConnectionPool" not in msg and "\n" not in msg


@pytest.mark.parametrize("value", ["1", "TRUE", "yes", "On"])
def test_offline_refuses_before_any_request(http_server, tmp_path, monkeypatch, value):
    url = http_server.add("/o.bin", DATA)
    monkeypatch.setenv("ARTIFACTS_PY_OFFLINE", value)
    assert settings.offline()
    with pytest.raises(OfflineError) as exc:
        download(url, tmp_path / "o.bin")
    assert url in str(exc.value) and "ARTIFACTS_PY_OFFLINE" in str(exc.value)
    assert http_server.requests == []
    assert not (tmp_path / "o.bin").exists()


def test_offline_is_read_each_call(monkeypatch):
    monkeypatch.setenv("ARTIFACTS_PY_OFFLINE", "0")
    assert not settings.offline()
    monkeypatch.setenv("ARTIFACTS_PY_OFFLINE", "on")
    assert settings.offline()


def test_extra_hashers_match_hashlib(http_server, tmp_path):
    url = http_server.add("/h.bin", DATA, truncate_first=1, truncate_at=CUT)
    git_blob = functools.partial(hashlib.sha1, blob_header(len(DATA)))
    result = download(url, tmp_path / "h.bin", hashers=[hashlib.md5, git_blob])
    md5, blob = result.digests
    assert md5.hexdigest() == hashlib.md5(DATA).hexdigest()
    assert blob.hexdigest() == hashlib.sha1(blob_header(len(DATA)) + DATA).hexdigest()
    assert result.sha256 == SHA


def test_file_url(tmp_path, monkeypatch):
    src = tmp_path / "src dir" / "data.bin"
    src.parent.mkdir()
    src.write_bytes(DATA)
    monkeypatch.setenv("ARTIFACTS_PY_OFFLINE", "1")  # local files are not the network
    result = download(src.as_uri(), tmp_path / "copy.bin", sha256=SHA)
    assert result.size == len(DATA) and (tmp_path / "copy.bin").read_bytes() == DATA
    with pytest.raises(DownloadError) as exc:
        download((tmp_path / "nope.bin").as_uri(), tmp_path / "copy2.bin")
    assert "nope.bin" in str(exc.value)


def test_progress_hook_sees_every_byte_and_the_total(http_server, tmp_path):
    url = http_server.add("/p.bin", DATA, truncate_first=1, truncate_at=CUT)
    seen, totals = [], []
    download(url, tmp_path / "p1", on_bytes=seen.append, on_total=totals.append)
    assert sum(seen) == len(DATA) and totals and totals[-1] == len(DATA)


def test_proxy_from_the_environment_is_used(http_server, tmp_path, monkeypatch):
    http_server.add("/via-proxy.bin", DATA)
    monkeypatch.setenv("HTTP_PROXY", http_server.base_url)
    monkeypatch.setenv("http_proxy", http_server.base_url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    url = "http://files.example.invalid/via-proxy.bin"  # resolvable only by the proxy
    assert download(url, tmp_path / "x", sha256=SHA).size == len(DATA)
    assert [r.path for r in http_server.requests] == [url]  # absolute form: a proxy request
    assert Transport().get_small(url, len(DATA)) is None  # the lean path never proxies


def test_no_proxy_goes_direct(http_server, tmp_path, monkeypatch):
    url = http_server.add("/direct.bin", DATA)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would refuse every connection
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert download(url, tmp_path / "x", sha256=SHA, transport=fast_session(retries=0)).size == len(DATA)
    assert [r.path for r in http_server.requests] == ["/direct.bin"]


def test_get_small_answers_only_a_plain_complete_200(http_server, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    small = DATA[:5000]
    ok = http_server.add("/ok.bin", small)
    cut = http_server.add("/cut.bin", small, truncate_first=1, truncate_at=100)
    busy = http_server.add("/busy.bin", small, fail_first=1, status=503)
    s = Transport()
    assert s.get_small(ok, len(small)) == small
    assert s.get_small(ok, len(small) + 1) is None  # the manifest says otherwise: not read
    assert s.get_small(cut, len(small)) is None  # broken body
    assert s.get_small(busy, len(small)) is None  # no retries on this path
    assert s.get_small(http_server.url("/missing"), 1) is None
    assert s.get_small(ok, len(small)) == small  # and it recovers after each failure
    assert s.get_small((Path(__file__)).as_uri(), 1) is None
    s.close()


def test_malformed_url_says_so(tmp_path):
    with pytest.raises(DownloadError) as exc:
        download("http://127.0.0.1:notaport/x.bin", tmp_path / "x")
    assert "127.0.0.1:notaport" in str(exc.value) and "not a valid URL" in str(exc.value)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("url", ["ftp://example.org/x.tar.gz", "gobbler:bench/small/v1",
                                 "s3://bucket/x.tar"])
def test_other_schemes_are_refused_by_name(tmp_path, url):
    # Not "the server redirected ...": no server was asked.
    with pytest.raises(DownloadError) as exc:
        download(url, tmp_path / "x")
    assert str(exc.value).startswith(f"{url}: not an http://, https:// or file:// URL")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name,raw,read", [
    ("ARTIFACTS_PY_MAX_CONNECTIONS", "inf", settings.max_connections),
    ("ARTIFACTS_PY_MAX_CONNECTIONS", "nan", settings.max_connections),
    ("ARTIFACTS_PY_MAX_CONNECTIONS", "lots", settings.max_connections),
    ("ARTIFACTS_PY_MAX_CONNECTIONS", "0", settings.max_connections),
    ("ARTIFACTS_PY_TIMEOUT", "nan", settings.timeout),
    ("ARTIFACTS_PY_TIMEOUT", "-inf", settings.timeout),
    ("ARTIFACTS_PY_RETRIES", "-1", settings.retries)])
def test_bad_numeric_settings_name_the_variable(monkeypatch, name, raw, read):
    from artifacts_py.errors import SettingError

    monkeypatch.setenv(name, raw)
    with pytest.raises(SettingError) as exc:
        read()
    assert str(exc.value).startswith(f"{name}={raw!r} ")


def test_import_does_not_load_requests():
    code = ("import sys, artifacts_py.transport; "
            "bad = {'requests', 'urllib3', 'tqdm'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


def test_faulty_server_basics(http_server):
    """The helper itself: HEAD, suffix ranges, unsatisfiable ranges, request log."""
    import requests

    url = http_server.add("/b.bin", b"0123456789")
    head = requests.head(url)
    assert head.headers["Content-Length"] == "10" and head.content == b""
    part = requests.get(url, headers={"Range": "bytes=-3"})
    assert (part.status_code, part.content) == (206, b"789")
    assert part.headers["Content-Range"] == "bytes 7-9/10"
    assert requests.get(url, headers={"Range": "bytes=10-"}).status_code == 416
    assert http_server.count("/b.bin") == 3 and http_server.count("/b.bin", "HEAD") == 1


def test_retry_after_beyond_the_cap_fails_at_once_saying_why(http_server, tmp_path):
    url = http_server.add("/busy.bin", DATA, status=503, retry_after=3600)
    start = time.monotonic()
    with pytest.raises(DownloadError) as exc:
        download(url, tmp_path / "busy.bin", transport=fast_session(retries=5))
    assert time.monotonic() - start < 10  # not an hour, not even the cap
    assert "3600" in str(exc.value) and "try again later" in str(exc.value)
    assert http_server.count("/busy.bin", "GET") == 1  # no retry was worth it


def test_short_retry_after_is_obeyed(http_server, tmp_path):
    url = http_server.add("/soon.bin", DATA, status=503, retry_after=1, fail_first=1)
    download(url, tmp_path / "soon.bin", sha256=SHA, transport=fast_session(retries=2))
    assert http_server.count("/soon.bin", "GET") == 2


def test_a_dripping_server_is_abandoned_by_the_low_speed_limit(http_server, tmp_path):
    url = http_server.add("/drip.bin", DATA, drip_every=0.2)
    slow = Transport(retries=0, speed_limit=1024, speed_time=1.0)
    start = time.monotonic()
    with pytest.raises(DownloadError) as exc:
        download(url, tmp_path / "drip.bin", transport=slow)
    assert time.monotonic() - start < 10
    assert "too slow" in str(exc.value) and "bytes/s" in str(exc.value)
    assert not (tmp_path / "drip.bin").exists()


def test_a_malformed_retry_after_is_ignored(http_server, tmp_path):
    url = http_server.add("/odd.bin", DATA, status=503, retry_after=0.3, fail_first=1)
    download(url, tmp_path / "odd.bin", sha256=SHA, transport=fast_session(retries=2))
    assert http_server.count("/odd.bin", "GET") == 2
