"""Shared fixtures: a real S3-protocol server over HTTP and a real Datasette.

By default the S3 server is moto in server mode (ThreadedMotoServer on an
ephemeral loopback port). Set DATASETTE_FILES_S3_TEST_BUCKET (plus the usual
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION and optionally
DATASETTE_FILES_S3_TEST_ENDPOINT) to run the same tests against a real bucket;
each test then works under its own random prefix.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import boto3
import pytest
import pytest_asyncio
from botocore.config import Config
from datasette.app import Datasette
from helpers import datasette_config

REAL_BUCKET = os.environ.get("DATASETTE_FILES_S3_TEST_BUCKET")


@dataclass
class S3Target:
    """Where tests put objects, and how to reach it."""

    endpoint_url: str | None
    region: str
    access_key_id: str
    secret_access_key: str
    real: bool

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(s3={"addressing_style": "path"} if self.endpoint_url else {}),
        )


@pytest.fixture(scope="session")
def s3_target():
    if REAL_BUCKET:
        yield S3Target(
            endpoint_url=os.environ.get("DATASETTE_FILES_S3_TEST_ENDPOINT"),
            region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            real=True,
        )
        return
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Target(
        endpoint_url=f"http://{host}:{port}",
        region="us-east-1",
        access_key_id="testing-key-id",
        secret_access_key="testing-secret-key",
        real=False,
    )
    server.stop()


@pytest.fixture(scope="session")
def moto():
    """A moto_server process with only bucket CORS rules, shared by the tests that
    need S3 in its own process (CLI preflights, live Datasette processes)."""
    from live_servers import MotoProcess

    server = MotoProcess().start()
    yield server
    server.stop()


@dataclass
class Bucket:
    """A bucket (moto: a fresh one; real: the configured one) and a test prefix."""

    name: str
    prefix: str
    target: S3Target
    client: object

    def source_config(self, **overrides) -> dict:
        config = {
            "bucket": self.name,
            "region": self.target.region,
            "prefix": self.prefix,
            "access_key_id": self.target.access_key_id,
            "secret_access_key": self.target.secret_access_key,
        }
        if self.target.endpoint_url:
            config["endpoint_url"] = self.target.endpoint_url
        config.update(overrides)
        return {k: v for k, v in config.items() if v is not None}

    def keys(self, under: str = "") -> list[str]:
        response = self.client.list_objects_v2(Bucket=self.name, Prefix=under)
        return [item["Key"] for item in response.get("Contents", [])]

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture
def bucket(s3_target):
    client = s3_target.client()
    if s3_target.real:
        prefix = f"datasette-files-s3-tests/{uuid.uuid4().hex}/"
        yield Bucket(REAL_BUCKET, prefix, s3_target, client)
        for key in Bucket(REAL_BUCKET, prefix, s3_target, client).keys(prefix):
            client.delete_object(Bucket=REAL_BUCKET, Key=key)
        return
    name = f"test-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=name)
    yield Bucket(name, "uploads/", s3_target, client)


@pytest_asyncio.fixture
async def make_datasette():
    """Build and start a Datasette with the given datasette-files sources."""

    async def make(sources: dict, **kwargs) -> Datasette:
        ds = Datasette(
            memory=True,
            config=datasette_config(sources, kwargs.pop("permissions", None)),
            secret=kwargs.pop("secret", "test-secret-for-signing"),
            **kwargs,
        )
        await ds.invoke_startup()
        return ds

    return make


@pytest_asyncio.fixture
async def ds(make_datasette, bucket):
    """A Datasette with one s3 source, `s3files`, pointed at the test bucket."""
    return await make_datasette({"s3files": {"storage": "s3", "config": bucket.source_config()}})


@pytest.fixture
def proxy(moto):
    """The ScopedS3Proxy in front of the `moto` process (tests/tenant_proxy.py)."""
    from tenant_proxy import ScopedS3Proxy

    server = ScopedS3Proxy(moto.port).start()
    yield server
    server.stop()


@pytest.fixture
def shared_bucket(moto):
    """A fresh bucket shared with another tenant, team-2/, who has an object and an open upload in it."""
    name = f"shared-{uuid.uuid4().hex[:12]}"
    admin = moto.client()
    admin.create_bucket(Bucket=name)
    admin.put_object(Bucket=name, Key="team-2/theirs.txt", Body=b"theirs")
    admin.create_multipart_upload(Bucket=name, Key="team-2/theirs.bin")
    return name
