#!/usr/bin/env python3
"""Ceph's RADOS Gateway on 127.0.0.1: a real S3 implementation for the tests.

RGW is the S3 server behind on-premises Ceph and several hosted S3-compatible
services. It checks more of a POST than LocalStack does (the policy's own
signature, form fields the policy does not name) and no checksum at all
(x-amz-checksum-* is stored or dropped unchecked). See docs/testing.md.

    python3 scripts/ceph_rgw.py install          # once: Debian's packages, with apt
    python3 scripts/ceph_rgw.py serve --port 7480

`serve` installs first if needed, then builds a throw-away single-node cluster
in one directory (one ceph-mon, one ceph-osd keeping objects in RAM, radosgw;
no systemd, nothing written elsewhere), and runs until it gets TERM or INT.
It then stops every process it started and removes the directory. It is ready
when http://127.0.0.1:PORT/ answers. Keys: --access-key / --secret-key
(default `test` / `test`). Every socket is bound to 127.0.0.1.

Only the standard library is used here, so any python3 can run this file.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

# Debian 12 (bookworm) ships Ceph 16.2.15 (Pacific); a stable release gets only
# security and point fixes, so the packages stay on 16.2.x. A Ceph of another
# release has not been measured: serve refuses it rather than test against it.
PACKAGES = ["ceph-mon", "ceph-osd", "radosgw", "ceph-common"]
MEASURED_RELEASE = "16.2."
COMMANDS = ["ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph"]
# RGW's pools, made up front (8 placement groups each): RGW would otherwise
# make each on first use, a second or two each time.
RGW_POOLS = [
    ".rgw.root",
    "default.rgw.log",
    "default.rgw.control",
    "default.rgw.meta",
    "default.rgw.buckets.index",
    "default.rgw.buckets.data",
    "default.rgw.buckets.non-ec",
]
# The OSD's objects live in RAM, about twice the bytes stored: a cap on that.
MEMSTORE_BYTES = 4 << 30
LOCK = Path(tempfile.gettempdir()) / "datasette-files-s3-ceph-install.lock"


def log(message: str) -> None:
    print(f"ceph_rgw.py: {message}", file=sys.stderr, flush=True)


def missing_commands() -> list[str]:
    return [name for name in COMMANDS if not shutil.which(name)]


def as_root(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return command
    if not shutil.which("sudo"):
        sys.exit(f"ceph_rgw.py: run as root, or with sudo on PATH, to install {' '.join(PACKAGES)}")
    return ["sudo", "-n", *command]


def install() -> None:
    """apt-get install Ceph's packages once (about 30 s); later calls return at once.
    Safe to run concurrently."""
    if not missing_commands():
        return
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second caller waits here, then finds the commands
        if not missing_commands():
            return
        started = time.monotonic()
        log(f"installing {' '.join(PACKAGES)} with apt-get")
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
        subprocess.run(as_root([*apt, "update", "-qq"]), check=True, env=environment)
        subprocess.run(
            as_root([*apt, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]),
            check=True,
            env=environment,
            stdout=subprocess.DEVNULL,
        )
        log(f"installed in {time.monotonic() - started:.0f}s")
    if missing_commands():
        sys.exit(f"ceph_rgw.py: still missing after install: {' '.join(missing_commands())}")


def version() -> str:
    """The installed Ceph's version, e.g. "16.2.15"."""
    output = subprocess.run(["ceph", "--version"], capture_output=True, text=True, check=True).stdout
    return output.split()[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ceph_conf(directory: Path, fsid: str, mon_port: int, rgw_port: int) -> str:
    """One node's config: no authentication, loopback only, every file in `directory`."""
    return f"""\
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
# Without it radosgw, with no authentication, never finishes starting
# (get_initial_auth_request returned -13, every 3 s).
ms mon client mode = crc
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
# A one-node throw-away cluster: commit map changes at once, not after 1 s each.
paxos propose interval = 0.01
# Every file in the cluster's own directory: nothing in /var/log/ceph or /var/run/ceph.
run dir = {directory}/run
admin socket = {directory}/run/$cluster-$name.asok
log file = {directory}/log/$cluster-$name.log
mon cluster log file = {directory}/log/cluster.log
crash dir = {directory}/crash
mon data = {directory}/mon/$cluster-$id
osd data = {directory}/osd/$cluster-$id
keyring = {directory}/keyring

[osd]
osd objectstore = memstore
memstore device bytes = {MEMSTORE_BYTES}

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {directory}/rgw
# A lifecycle "day" is 10 s, so AbortIncompleteMultipartUpload rules run in a test.
rgw lc debug interval = 10
# Deleted objects' RAM comes back within a minute, not after RGW's default 2 hours.
rgw gc obj min wait = 30
rgw gc processor period = 30
"""


def die_with_parent() -> None:
    """In a child: get TERM if the launcher dies, even by KILL, so no daemon outlives it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Cluster:
    """A one-node Ceph cluster with RGW, every file under `directory`."""

    def __init__(self, directory: Path, port: int, access_key: str, secret_key: str):
        self.directory = directory
        self.port = port
        self.access_key = access_key
        self.secret_key = secret_key
        self.conf = directory / "ceph.conf"
        self.daemons: list[subprocess.Popen] = []

    def run(self, *command: str) -> str:
        """A Ceph tool against this cluster; its output, or the exit with its error."""
        done = subprocess.run(
            [command[0], "-c", str(self.conf), *command[1:]], capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def daemon(self, *command: str) -> subprocess.Popen:
        """Start a Ceph daemon in the foreground (-f) of its own child process."""
        name = command[0]
        with open(self.directory / "log" / f"{name}.out", "ab") as out:
            process = subprocess.Popen(
                [name, "-f", "-c", str(self.conf), *command[1:]],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        self.daemons.append(process)
        return process

    def start(self) -> None:
        fsid = str(uuid.uuid4())
        mon_port = free_port()
        for sub in ("run", "log", "crash", "mon", "osd/ceph-0", "rgw"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(ceph_conf(self.directory, fsid, mon_port, self.port))
        monmap = self.directory / "monmap"
        address = f"[v2:127.0.0.1:{mon_port}]"
        monmaptool = ["monmaptool", "--create", "--fsid", fsid, "--addv", "a", address, str(monmap)]
        subprocess.run(monmaptool, check=True, capture_output=True)
        self.run("ceph-mon", "-i", "a", "--mkfs", "--monmap", str(monmap))
        self.daemon("ceph-mon", "-i", "a")
        osd_id = self.run("ceph", "osd", "create").strip()
        self.run("ceph", "osd", "crush", "add", f"osd.{osd_id}", "1", "root=default")
        self.run("ceph-osd", "-i", osd_id, "--mkfs")
        self.daemon("ceph-osd", "-i", osd_id)
        for pool in RGW_POOLS:
            self.run("ceph", "osd", "pool", "create", pool, "8")
            self.run("ceph", "osd", "pool", "application", "enable", pool, "rgw")
        self.run(
            "radosgw-admin", "user", "create", "--uid", "test", "--display-name", "test",
            "--access-key", self.access_key, "--secret-key", self.secret_key,
        )  # fmt: skip
        # Only now: the port answers once radosgw is up, and the keys must work by then.
        self.daemon("radosgw", "-n", "client.rgw")
        self.wait_until_answering()

    def wait_until_answering(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/"
        while time.monotonic() < deadline:
            for process in self.daemons:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
            try:
                urllib.request.urlopen(url, timeout=2)
                return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"radosgw did not answer on {url} within {timeout:.0f}s")

    def stop(self) -> None:
        """TERM every daemon, newest first (radosgw, then the OSD, then the mon)."""
        for process in reversed(self.daemons):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.daemons.clear()

    def log_tail(self, characters: int = 3000) -> str:
        logs = sorted((self.directory / "log").glob("*"))
        return "\n".join(f"== {path.name}\n{path.read_text(errors='replace')[-characters:]}" for path in logs)


def serve(port: int, directory: str | None, access_key: str, secret_key: str) -> int:
    """Run the cluster until TERM or INT (0), or until a daemon exits or it cannot start (1)."""
    install()
    found = version()
    if not found.startswith(MEASURED_RELEASE):
        sys.exit(f"ceph_rgw.py: Ceph {found} is installed; the tests are measured on {MEASURED_RELEASE}x")
    path = Path(directory or tempfile.mkdtemp(prefix="ceph-rgw-"))
    cluster = Cluster(path, port, access_key, secret_key)

    def stop_on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_signal)
    started = time.monotonic()
    try:
        cluster.start()
        log(f"Ceph {found} RGW on http://127.0.0.1:{port}, started in {time.monotonic() - started:.1f}s")
        while all(process.poll() is None for process in cluster.daemons):
            time.sleep(0.5)
        exited = ", ".join(p.args[0] for p in cluster.daemons if p.poll() is not None)
        log(f"{exited} exited; stopping. Logs:\n{cluster.log_tail()}")
        return 1
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError, OSError) as ex:
        log(f"could not start: {ex}\n{cluster.log_tail()}")
        return 1
    finally:
        cluster.stop()
        if directory is None:
            shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="apt-get install Ceph's packages (once) and print its version")
    serve_parser = commands.add_parser("serve", help="run Ceph RGW on 127.0.0.1:PORT until TERM")
    serve_parser.add_argument("--port", type=int, default=7480)
    serve_parser.add_argument(
        "--data-dir", help="the cluster's directory (default: a new temporary one, removed at the end)"
    )
    serve_parser.add_argument("--access-key", default="test")
    serve_parser.add_argument("--secret-key", default="test")
    args = parser.parse_args()
    if args.command == "install":
        install()
        print(f"ceph {version()}")
    else:
        sys.exit(serve(args.port, args.data_dir, args.access_key, args.secret_key))


if __name__ == "__main__":
    main()
