"""Real Datasette processes for browser, load and fault tests.

`DatasetteProcess` runs `datasette serve` with a config file, capturing its
access log so a test can show which requests reached Datasette. It binds to
loopback on a free port. The S3 servers are in tests/s3_servers.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
# Debian's Chromium, launched the same way by the browser tests and the browser benchmark.
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is listening on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30, process: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers, failing early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class DatasetteProcess:
    """`datasette serve` with a config file, its access log kept in a file."""

    def __init__(
        self,
        config: dict,
        port: int | None = None,
        secret: str = "live-test-secret",
        internal: str | None = None,
        executable: str | None = None,
        databases: tuple[str, ...] = (),
    ):
        self.config = config
        # SQLite files to serve besides the in-memory database.
        self.databases = tuple(databases)
        # Another virtualenv's `datasette` (the benchmark runs a published release this way).
        self.executable = executable or str(BIN / "datasette")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secret
        self.internal = internal
        self.workdir = Path(tempfile.mkdtemp(prefix="dfs3-datasette-"))
        self.log_path = self.workdir / "datasette.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> DatasetteProcess:
        config_path = self.workdir / "datasette.json"
        config_path.write_text(json.dumps(self.config))
        command = [
            self.executable,
            "serve",
            *self.databases,
            "--memory",
            "-c",
            str(config_path),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--secret",
            self.secret,
        ]
        if self.internal:
            command += ["--internal", self.internal]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_for_http(self.url + "/-/versions.json", process=self.process)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if getattr(self, "_log", None):
            self._log.close()

    def restart(self) -> DatasetteProcess:
        """Stop and start again on the same port with the same secret."""
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def requests_logged(self) -> list[str]:
        """Request lines (`POST /path`) from uvicorn's access log, in order."""
        lines = []
        for line in self.log().splitlines():
            if '"' in line and " HTTP/" in line:
                request = line.split('"')[1]
                lines.append(request.rsplit(" HTTP/", 1)[0])
        return lines

    def cookie_for(self, actor_id: str = "alice") -> str:
        """A `ds_actor` cookie value signed with this server's secret."""
        from datasette.app import Datasette

        ds = Datasette(memory=True, secret=self.secret)
        return ds.client.actor_cookie({"id": actor_id})


def live_config(source_config: dict, source: str = "s3files", **plugin_options) -> dict:
    """datasette.yaml for a live server: one s3 source; browse for all, upload and delete for logged-in actors."""
    return {
        "plugins": {
            "datasette-files": {
                "sources": {source: {"storage": "s3", "config": source_config}},
                **plugin_options,
            }
        },
        "permissions": {
            "files-browse": True,
            "files-upload": {"id": "*"},
            "files-edit": {"id": "*"},
            "files-delete": {"id": "*"},
        },
    }
