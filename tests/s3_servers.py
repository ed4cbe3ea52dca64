"""The S3 servers the tests reach over HTTP, each started one way.

- `MotoServer`: `moto_server`, which enforces nothing: it accepts an upload
  whatever its POST policy, signature, expiry or checksum says.
- `LocalStackServer`: LocalStack's S3 through `scripts/localstack_s3.py`. It
  enforces POST policy conditions, presigned URL signatures (against the fixed
  secret `test`) and bucket CORS rules, as AWS does.
- `CephServer`: Ceph's RADOS Gateway, a real S3 implementation, through
  `scripts/ceph_rgw.py`. It enforces POST policies down to their signature and
  refuses form fields a policy does not name; it checks no checksum.
- `ExistingBucket`: a bucket someone else runs (real-bucket mode,
  DATASETTE_FILES_S3_TEST_BUCKET): tests get a prefix in it, never a bucket.

A run picks one with `pytest --s3=moto|localstack|ceph` (see the root
conftest.py); `start_s3_server(kind)` starts one of that kind.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import ClassVar
from uuid import uuid4

import boto3
import httpx
from botocore.config import Config

from tests.live_servers import BIN, free_port, wait_for_http

ROOT = Path(__file__).resolve().parent.parent


class S3Server:
    """An S3 endpoint on loopback, its keys, and what it enforces."""

    kind: ClassVar[str]
    # Whether a POST that breaks its policy (size, key, type, expiry) is refused.
    enforces_policy: ClassVar[bool]
    # Whether an upload with a wrong x-amz-checksum-sha256 is refused (None: not known).
    checks_checksums: ClassVar[bool | None] = False
    # Whether HEAD (ChecksumMode=ENABLED) reports the SHA-256, or multipart composite, of what it stored.
    reports_checksums: ClassVar[bool | None] = True
    # Whether CompleteMultipartUpload with If-None-Match: * is refused onto an existing key
    # (every store here refuses a PUT with it: tests/test_put_uploads.py).
    conditional_complete: ClassVar[bool | None] = True
    # Whether keys a test makes up are taken (moto checks none, LocalStack any key id
    # with its fixed secret); Ceph checks each against its own users.
    takes_any_key_id: ClassVar[bool | None] = True
    can_create_buckets: ClassVar[bool] = True
    region = "us-east-1"
    access_key_id = "testing-key-id"
    secret_access_key = "testing-secret-key"

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.endpoint_url: str | None = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> S3Server:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self, service: str = "s3", keys: dict | None = None, **config):
        """A boto3 client for this server, with its own keys unless `keys` (boto3's
        aws_access_key_id / aws_secret_access_key) are given; `config` adds botocore Config options."""
        keys = keys or {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            **keys,
            config=Config(s3={"addressing_style": "path"} if self.endpoint_url else {}, **config),
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
        """A datasette-files-s3 source config for `bucket` on this server (prefix `uploads`)."""
        config = {
            "bucket": bucket,
            "region": self.region,
            "prefix": "uploads",
            "endpoint_url": self.endpoint_url,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            **overrides,
        }
        return {k: v for k, v in config.items() if v is not None}


class MotoServer(S3Server):
    """`moto_server` in its own process on a free loopback port, or on a thread of this one.

    By default only bucket CORS rules apply (MOTO_DISABLE_GLOBAL_CORS), as on
    real S3, so a missing rule really blocks the browser. But moto 5.2 sends
    no CORS headers at all on POST-object responses under that setting, so a
    browser test of presigned POST needs `global_cors=True`: moto then allows
    every origin for POST, while PUT responses still expose only what the
    bucket rule exposes (ETag).

    `in_process=True` runs it on a thread here, for `backdate`: S3 stamps
    LastModified itself and no client can set it, yet cleanup's age checks
    need objects written days ago.

    With `enforce_iam`, moto checks every request's keys against its IAM users
    and their policies: the server's own keys are then an admin user's, made at
    start, and `iam_user_keys` makes users with narrower policies.
    """

    kind = "moto"
    enforces_policy = False

    def __init__(
        self,
        port: int | None = None,
        global_cors: bool = False,
        in_process: bool = False,
        enforce_iam: bool = False,
    ):
        super().__init__(port)
        self.global_cors = global_cors
        self.in_process = in_process
        self.enforce_iam = enforce_iam
        self.thread_server = None

    def start(self) -> MotoServer:
        if self.in_process:
            from moto.server import ThreadedMotoServer

            self.thread_server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            self.thread_server.start()
            return self
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
            admin = self.iam_user_keys("admin", {"Effect": "Allow", "Action": "*", "Resource": "*"})
            self.access_key_id, self.secret_access_key = (
                admin["aws_access_key_id"],
                admin["aws_secret_access_key"],
            )
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
        if self.thread_server is not None:
            self.thread_server.stop()
            self.thread_server = None
        super().stop()

    def backdate(self, bucket: str, key: str, seconds: float) -> None:
        """Make an object's LastModified `seconds` earlier, as if written that long ago (in-process only)."""
        from moto.s3.models import s3_backends

        assert self.in_process, "backdate reaches into moto's backend: start with in_process=True"
        partition, account = s3_backends.bucket_accounts[bucket]
        s3_backends[account][partition].get_object(bucket, key).last_modified -= timedelta(seconds=seconds)


class ScriptServer(S3Server):
    """A server started by one of the project's own scripts: `install` (once), then `serve --port`."""

    script: ClassVar[Path]
    ready_path: ClassVar[str]  # answers once the server takes requests

    def start(self) -> ScriptServer:
        # Install first (cached after the first run) so the start-up wait is only start-up.
        subprocess.run([sys.executable, str(self.script), "install"], check=True, stdout=subprocess.DEVNULL)
        self.log_path = Path(tempfile.mkdtemp(prefix=f"dfs3-{self.kind}-")) / f"{self.kind}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(self.script), "serve", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_http(self.endpoint_url + self.ready_path, timeout=120, process=self.process)
        except (RuntimeError, TimeoutError) as ex:
            self.stop()
            raise RuntimeError(f"{ex}; its log:\n{self.log_path.read_text()[-3000:]}") from None
        return self


class LocalStackServer(ScriptServer):
    """LocalStack's S3, started by scripts/localstack_s3.py, bound to 127.0.0.1."""

    kind = "localstack"
    enforces_policy = True
    checks_checksums = True
    script = ROOT / "scripts" / "localstack_s3.py"
    ready_path = "/_localstack/health"
    # Any key id; presigned URL signatures are checked against this fixed secret.
    access_key_id = "test"
    secret_access_key = "test"


class CephServer(ScriptServer):
    """Ceph's RADOS Gateway on a one-node cluster, started by scripts/ceph_rgw.py on 127.0.0.1.

    The script makes a user with the keys `test` / `test`."""

    kind = "ceph"
    enforces_policy = True
    script = ROOT / "scripts" / "ceph_rgw.py"
    ready_path = "/"
    reports_checksums = False
    conditional_complete = False  # Ceph 16 (Debian 12) completes onto the key regardless
    takes_any_key_id = False
    access_key_id = "test"
    secret_access_key = "test"


class ExistingBucket(S3Server):
    """Real-bucket mode: a bucket the tests did not make, reached with the environment's keys."""

    kind = "existing"
    can_create_buckets = False
    checks_checksums = None  # not asked: tests that need to know are skipped
    reports_checksums = None
    conditional_complete = None
    takes_any_key_id = None

    def __init__(self, bucket: str):
        self.bucket = bucket
        self.port = None
        self.process = None
        self.endpoint_url = os.environ.get("DATASETTE_FILES_S3_TEST_ENDPOINT")
        self.region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        self.access_key_id = os.environ["AWS_ACCESS_KEY_ID"]
        self.secret_access_key = os.environ["AWS_SECRET_ACCESS_KEY"]
        self.enforces_policy: bool | None = None  # unknown until probe_policy_enforcement asks

    def start(self) -> ExistingBucket:
        return self

    def probe_policy_enforcement(self) -> bool:
        """Ask the store, as `files-s3 doctor` does, whether it refuses POSTs that break their policy."""
        # Imported here, not at the top: the root conftest imports this module
        # first thing, and importing the plugin before Datasette has loaded its
        # entry points makes Datasette register it half-imported, with no hooks.
        from datasette_files_s3 import doctor
        from datasette_files_s3.storage import S3Storage

        async def probe() -> bool:
            storage = S3Storage()
            await storage.configure(
                self.source_config(self.bucket, prefix=f"datasette-files-s3-tests/{uuid4().hex}")
            )
            async with httpx.AsyncClient(timeout=60) as http:
                return (await doctor.check_policy(storage, http)).status == doctor.PASS

        return asyncio.run(probe())

    def create_bucket(self, name: str, cors_origins=None, expose_etag=True) -> None:
        raise RuntimeError("real-bucket mode: tests get a prefix in the configured bucket, never a bucket")


# The kinds a run can choose with --s3.
SERVER_KINDS: dict[str, type[S3Server]] = {
    "moto": MotoServer,
    "localstack": LocalStackServer,
    "ceph": CephServer,
}


def start_s3_server(kind: str, **options) -> S3Server:
    """Start an S3 server of this kind ("moto", "localstack" or "ceph") on a free loopback port."""
    return SERVER_KINDS[kind](**options).start()
