"""Real server processes for browser, load and fault tests.

`MotoProcess` runs `moto_server` as its own process (so uploaded bytes never
land in the test process), and `DatasetteProcess` runs `datasette serve` with
a config file, capturing its access log so a test can show which requests
reached Datasette. Both bind to loopback on a free port.
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

import boto3
import httpx
from botocore.config import Config

BIN = Path(sys.executable).parent
MOTO_KEY_ID = "testing-key-id"
MOTO_SECRET = "testing-secret-key"


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


class MotoProcess:
    """`moto_server` in its own process on a free loopback port.

    With `enforce_iam`, moto checks every request's keys against its IAM users
    and their policies: `client()` then uses an admin user made at start, and
    `iam_user_keys` makes users with narrower policies.

    By default only bucket CORS rules apply (MOTO_DISABLE_GLOBAL_CORS), as on
    real S3, so a missing rule really blocks the browser. But moto 5.2 sends
    no CORS headers at all on POST-object responses under that setting, so a
    browser test of presigned POST needs `global_cors=True`: moto then allows
    every origin for POST, while PUT responses still expose only what the
    bucket rule exposes (ETag).
    """

    def __init__(self, port: int | None = None, global_cors: bool = False, enforce_iam: bool = False):
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.global_cors = global_cors
        self.enforce_iam = enforce_iam
        self.keys = {"aws_access_key_id": MOTO_KEY_ID, "aws_secret_access_key": MOTO_SECRET}
        self.process: subprocess.Popen | None = None

    def start(self) -> MotoProcess:
        env = dict(os.environ)
        if not self.global_cors:
            env["MOTO_DISABLE_GLOBAL_CORS"] = "true"
        if self.enforce_iam:
            # moto lets this many requests through unchecked: the three that make the admin.
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        self.process = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        wait_for_http(self.endpoint_url + "/moto-api/", process=self.process)
        if self.enforce_iam:
            self.keys = self.iam_user_keys("admin", {"Effect": "Allow", "Action": "*", "Resource": "*"})
        return self

    def iam_user_keys(self, name: str, *statements: dict) -> dict:
        """An IAM user allowed what `statements` allow (nothing when none are given);
        returns its keys as boto3 arguments."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        if statements:
            policy = {"Version": "2012-10-17", "Statement": list(statements)}
            iam.put_user_policy(UserName=name, PolicyName="test", PolicyDocument=json.dumps(policy))
        return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def client(self, service: str = "s3", keys: dict | None = None, **config):
        """A boto3 client for this server (admin keys unless `keys` are given);
        `config` adds botocore Config options."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            **(keys or self.keys),
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def create_bucket(
        self, name: str, cors_origins: list[str] | None = None, expose_etag: bool = True
    ) -> None:
        """A bucket, with a CORS rule for the given origins like the one `files-s3 cors` writes."""
        client = self.client()
        client.create_bucket(Bucket=name)
        if cors_origins:
            rule = {
                "AllowedOrigins": cors_origins,
                "AllowedMethods": ["GET", "HEAD", "POST", "PUT"],
                "AllowedHeaders": ["*"],
                "MaxAgeSeconds": 3000,
            }
            if expose_etag:
                rule["ExposeHeaders"] = ["ETag"]
            client.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [rule]})

    def source_config(self, bucket: str, **overrides) -> dict:
        return {
            "bucket": bucket,
            "region": "us-east-1",
            "prefix": "uploads",
            "endpoint_url": self.endpoint_url,
            "access_key_id": self.keys["aws_access_key_id"],
            "secret_access_key": self.keys["aws_secret_access_key"],
            **overrides,
        }


class DatasetteProcess:
    """`datasette serve` with a config file, its access log kept in a file."""

    def __init__(
        self,
        config: dict,
        port: int | None = None,
        secret: str = "live-test-secret",
        internal: str | None = None,
        executable: str | None = None,
    ):
        self.config = config
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
