"""Shared fixtures: a real S3-protocol server over HTTP and a real Datasette.

The S3 server is this run's (`--s3=moto|localstack`, see the root
conftest.py). Set DATASETTE_FILES_S3_TEST_BUCKET (plus the usual
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION and optionally
DATASETTE_FILES_S3_TEST_ENDPOINT) to run the `bucket` tests against a real
bucket instead: each test then works under its own random area of it, and
asserts only about that area. Tests that need a bucket of their own (its CORS
or lifecycle rules, every object in it) get one on this run's server.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from datasette.app import Datasette

from tests.cli_support import write_config
from tests.fault_injection import Broker, FlakyS3Proxy
from tests.helpers import datasette_config
from tests.s3_servers import S3Server


@dataclass
class Bucket:
    """Where one test keeps objects: a fresh bucket, or its own area of the real bucket.

    `area` is the part of the bucket that is the test's own ("" for a fresh
    bucket); the source's `prefix` lies inside it.
    """

    name: str
    area: str
    server: S3Server
    client: object

    @property
    def prefix(self) -> str:
        return self.area + "uploads/"

    def source_config(self, **overrides) -> dict:
        """A source config for this bucket; a `prefix` override is taken within the test's area."""
        prefix = self.area + overrides.pop("prefix") if "prefix" in overrides else self.prefix
        return self.server.source_config(overrides.pop("bucket", self.name), prefix=prefix, **overrides)

    def keys(self, under: str = "") -> list[str]:
        """Keys under `under`, which must lie within the test's area."""
        assert under.startswith(self.area), f"{under!r} is outside this test's area {self.area!r}"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=under)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def multipart_uploads(self, under: str | None = None) -> list[dict]:
        """Multipart uploads in progress under `under` (default: the source's prefix)."""
        under = self.prefix if under is None else under
        assert under.startswith(self.area), f"{under!r} is outside this test's area {self.area!r}"
        answer = self.client.list_multipart_uploads(Bucket=self.name, Prefix=under)
        return answer.get("Uploads", [])

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def empty_area(self) -> None:
        """Delete every object and abort every multipart upload in the test's area."""
        for upload in self.multipart_uploads(self.area):
            self.client.abort_multipart_upload(
                Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for key in self.keys(self.area):
            self.client.delete_object(Bucket=self.name, Key=key)


@pytest.fixture
def bucket(bucket_store):
    """A fresh bucket on this run's server, or (real-bucket mode) a fresh area of the real bucket."""
    client = bucket_store.client()
    if not bucket_store.can_create_buckets:
        area = Bucket(
            bucket_store.bucket, f"datasette-files-s3-tests/{uuid.uuid4().hex}/", bucket_store, client
        )
        yield area
        area.empty_area()
        return
    name = f"bucket-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=name)
    yield Bucket(name, "", bucket_store, client)


@pytest.fixture
def bucket_name(s3_server) -> str:
    """The name of a fresh bucket on this run's server, no CORS rule, the test's alone."""
    name = f"own-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def s3_proxy(bucket):
    """A logging proxy in front of the test's S3 server (its `requests`), or None for a real bucket.

    Point a source's endpoint_url at its `url` to see every request Datasette sends to S3.
    """
    if bucket.server.port is None:
        yield None
        return
    proxy = FlakyS3Proxy(bucket.server.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def http():
    """An HTTP client for requests straight to S3 (presigned POSTs, part PUTs)."""
    with httpx.Client(timeout=120) as client:
        yield client


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
def proxy(s3_server):
    """The ScopedS3Proxy in front of this run's S3 server, moto for the tenant tests (tests/tenant_proxy.py)."""
    from tests.tenant_proxy import ScopedS3Proxy

    server = ScopedS3Proxy(s3_server.port).start()
    yield server
    server.stop()


@pytest.fixture
def shared_bucket(s3_server):
    """A fresh bucket shared with another tenant, team-2/, who has an object and an open upload in it."""
    name = f"shared-{uuid.uuid4().hex[:12]}"
    admin = s3_server.client()
    admin.create_bucket(Bucket=name)
    admin.put_object(Bucket=name, Key="team-2/theirs.txt", Body=b"theirs")
    admin.create_multipart_upload(Bucket=name, Key="team-2/theirs.bin")
    return name


@pytest.fixture
def config_path(tmp_path, s3_server, bucket_name):
    """A Datasette config file with one s3 source, `s3files`, on this run's bucket (CLI tests)."""
    return write_config(tmp_path, s3_server.source_config(bucket_name))


@pytest.fixture
def cli_broker(bucket_name, s3_server):
    """A credentials broker handing out this run's keys for s3://bucket/brokered/ (CLI tests)."""
    server = Broker(
        "right-broker-secret",
        f"s3://{bucket_name}/brokered/",
        s3_server.access_key_id,
        s3_server.secret_access_key,
        "broker-session-token",
    ).start()
    yield server
    server.stop()
