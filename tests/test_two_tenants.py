"""Issue 14: two tenants side by side in one bucket, and a broker that moves a tenant.

Two `datasette serve` processes (their own secrets, their own S3Folders,
team-1/ and team-2/ of one bucket) run at once, each with its own
TenantBroker. They are processes, not two in-process Datasettes, because
datasette-files keeps its sources in one module-wide registry: two instances
in one process would share them, which no deployment does.

As in tests/test_tenants.py, every AccessDenied is the ScopedS3Proxy's (s3_server
ignores session policies), and the proxy's request log is the store's view.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from datasette_files_s3 import files_bridge
from datasette_files_s3.credentials import BrokerCredentialsProvider
from tests.helpers import actor_cookies
from tests.live_clients import direct_upload, multipart_call, signed_in
from tests.live_servers import DatasetteProcess, live_config
from tests.tenancy import TenantBroker, brokered_source, set_up_tenant_role
from tests.tenant_proxy import ScopedS3Proxy

# moto itself: its IAM and STS, which LocalStack's S3-only run does not have.
pytestmark = pytest.mark.store("moto", reason="uses moto's IAM and STS")


SOURCE = "tenant"
PART = 5 * 1024 * 1024
CONTENT = os.urandom(PART + 1000)  # two parts


@dataclass
class Tenant:
    """One team's Datasette process, its broker and its folder."""

    prefix: str
    broker: TenantBroker
    server: DatasetteProcess
    internal: str

    def client(self) -> httpx.Client:
        return signed_in(self.server.url, self.server.cookie_for("alice"))

    def keys(self) -> set[str]:
        """Every access key the broker has issued to this tenant."""
        return {issued["AccessKeyId"] for issued in self.broker.issued}


@pytest.fixture(scope="module")
def world(s3_server, tmp_path_factory):
    """One bucket, one proxy, two tenants each with its own broker, secret and Datasette."""
    proxy = ScopedS3Proxy(s3_server.port).start()
    bucket = f"shared-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    role_arn, caller = set_up_tenant_role(s3_server.endpoint_url, bucket)
    tenants = {}
    try:
        for team in ("team-1", "team-2"):
            secret = f"{team}-broker-secret-{uuid.uuid4().hex[:6]}"
            broker = TenantBroker(secret, bucket, f"{team}/", proxy, role_arn, caller).start()
            source = {**brokered_source(broker.url, secret, proxy.url), "multipart_threshold": "5MiB"}
            internal = str(tmp_path_factory.mktemp(team) / "internal.db")
            server = DatasetteProcess(
                live_config(source, source=SOURCE), secret=f"{team}-datasette-secret", internal=internal
            ).start()
            tenants[team] = Tenant(f"{team}/", broker, server, internal)
        yield proxy, bucket, tenants["team-1"], tenants["team-2"]
    finally:
        for tenant in tenants.values():
            tenant.server.stop()
            tenant.broker.stop()
        proxy.stop()


@pytest.fixture
def two(world):
    proxy, bucket, one, other = world
    proxy.clear_log()
    yield world
    # After every test, from the store's log: nothing a tenant's keys reached was outside its own
    # folder (what a test crafts to reach further is denied, and that test checks the denial).
    for tenant in (one, other):
        mine = [r for r in proxy.requests if r.access_key_id in tenant.keys() and not r.denied]
        assert [r for r in mine if r.outside(bucket, tenant.prefix)] == []


def start_multipart(tenant: Tenant) -> str:
    with tenant.client() as client:
        created = multipart_call(
            client,
            SOURCE,
            "create",
            {"filename": "big.bin", "content_type": "application/octet-stream", "size": len(CONTENT)},
        )
    assert created.status_code == 200, created.text
    return created.json()["upload_token"]


def part_url(tenant: Tenant, token: str, number: int = 1) -> str:
    with tenant.client() as client:
        signed = multipart_call(client, SOURCE, "sign", {"upload_token": token, "part_numbers": [number]})
    assert signed.status_code == 200, signed.text
    return signed.json()["urls"][str(number)]


def open_uploads(s3_server, bucket: str, prefix: str) -> list[dict]:
    return s3_server.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])


def test_each_tenant_uploads_into_its_own_folder(two, s3_server):
    proxy, bucket, one, other = two
    for tenant in (one, other):
        with tenant.client() as client, httpx.Client(timeout=60) as http:
            file = direct_upload(client, http, SOURCE, b"from " + tenant.prefix.encode(), "f.txt")
        key = tenant.prefix + file["id"].removeprefix("df-") + "/f.txt"
        assert (
            s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
            == b"from " + tenant.prefix.encode()
        )
    assert one.keys() and other.keys() and not one.keys() & other.keys()


def test_direct_upload_token_of_one_is_refused_by_the_other(two):
    proxy, bucket, one, other = two
    with one.client() as client:
        prepared = client.post(
            f"/-/files/upload/{SOURCE}/-/prepare",
            json={"filename": "a.txt", "content_type": "text/plain", "size": 3},
        ).json()
    httpx.post(prepared["upload_url"], data=prepared["upload_fields"], files={"file": ("a.txt", b"abc")})
    with other.client() as client:
        refused = client.post(
            f"/-/files/upload/{SOURCE}/-/complete", json={"upload_token": prepared["upload_token"]}
        )
    assert refused.status_code == 400
    assert "not issued here" in refused.json()["errors"][0]
    with one.client() as client:
        done = client.post(
            f"/-/files/upload/{SOURCE}/-/complete", json={"upload_token": prepared["upload_token"]}
        )
    assert done.status_code == 201, done.text


@pytest.mark.parametrize("step", ["sign", "parts", "complete", "abort"])
def test_multipart_token_of_one_is_refused_by_the_other(two, s3_server, step):
    proxy, bucket, one, other = two
    token = start_multipart(one)
    with other.client() as client:
        refused = multipart_call(client, SOURCE, step, {"upload_token": token, "part_numbers": [1]})
    assert refused.status_code == 400
    assert refused.json()["ok"] is False and "not issued here" in refused.json()["errors"][0]
    # The upload is untouched: it is still open, and its own tenant can still use it.
    with one.client() as client:
        assert multipart_call(client, SOURCE, "parts", {"upload_token": token}).status_code == 200
        assert multipart_call(client, SOURCE, "abort", {"upload_token": token}).json() == {"ok": True}


def test_part_url_of_one_cannot_reach_the_others_upload(two, s3_server):
    proxy, bucket, one, other = two
    url = part_url(one, start_multipart(one))
    their_token = start_multipart(other)
    [theirs] = [u for u in open_uploads(s3_server, bucket, other.prefix) if u["Key"].endswith("/big.bin")][
        -1:
    ]
    # A client rewrites tenant one's signed part URL to point at tenant two's upload.
    parts = urlsplit(url)
    query = "&".join(
        f"uploadId={theirs['UploadId']}" if item.startswith("uploadId=") else item
        for item in parts.query.split("&")
    )
    crafted = f"{parts.scheme}://{parts.netloc}/{bucket}/{theirs['Key']}?{query}"
    response = httpx.put(crafted, content=CONTENT[:PART])
    # Real S3 would also refuse the signature (it covers the path); moto checks none, the proxy's IAM decides.
    assert response.status_code == 403
    assert ET.fromstring(response.content).findtext("Code") == "AccessDenied"
    assert (
        s3_server.client()
        .list_parts(Bucket=bucket, Key=theirs["Key"], UploadId=theirs["UploadId"])
        .get("Parts")
        is None
    )
    with other.client() as client:
        multipart_call(client, SOURCE, "abort", {"upload_token": their_token})


def test_neither_reads_the_others_files(two):
    proxy, bucket, one, other = two
    with other.client() as client, httpx.Client(timeout=60) as http:
        theirs = direct_upload(client, http, SOURCE, b"private to team two", "secret.txt")
    with one.client() as client:
        for path in (
            f"/-/files/{theirs['id']}",
            f"/-/files/{theirs['id']}/download",
            f"/-/files/{theirs['id']}.json",
        ):
            assert client.get(path).status_code == 404, path
        # A crafted filename cannot climb out of the prefix into the other folder.
        crafted = client.post(
            f"/-/files/upload/{SOURCE}/-/prepare",
            json={"filename": "../team-2/" + theirs["filename"], "content_type": "text/plain", "size": 3},
        )
    assert crafted.status_code == 400 and crafted.json()["ok"] is False


def test_cleanup_of_one_leaves_the_others_objects_alone(two, s3_server, tmp_path):
    proxy, bucket, one, other = two
    with other.client() as client, httpx.Client(timeout=60) as http:
        theirs = direct_upload(client, http, SOURCE, b"keep me", "keep.txt")
    their_path = theirs["id"].removeprefix("df-") + "/keep.txt"
    # Crafted rows in tenant one's own records, pointing at tenant two's object.
    with sqlite3.connect(one.internal) as db:
        for file_id, path in (
            ("df-crafted1", "../team-2/" + their_path),
            ("df-crafted2", "/team-2/" + their_path),
        ):
            db.execute(
                "INSERT INTO datasette_files_s3_pending (file_id, source, path, kind, filename, content_type,"
                " size, created_at, expires_at) VALUES (?, ?, ?, 'post', 'x', 'text/plain', 1, 0, ?)",
                [file_id, SOURCE, path, time.time() - 3 * 3600],
            )
    config = tmp_path / "team-1.json"
    config.write_text(json.dumps(one.server.config))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "datasette",
            "files-s3",
            "cleanup",
            SOURCE,
            "-c",
            str(config),
            "--internal",
            one.internal,
            "--unrecorded",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "outside the prefix" in result.stdout
    assert (
        s3_server.client().get_object(Bucket=bucket, Key=other.prefix + their_path)["Body"].read()
        == b"keep me"
    )


# --- the broker moves a tenant during an upload -----------------------------------------------


@pytest.fixture
def lone_tenant(s3_server):
    proxy = ScopedS3Proxy(s3_server.port).start()
    bucket = f"moving-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    role_arn, caller = set_up_tenant_role(s3_server.endpoint_url, bucket)
    broker = TenantBroker("moving-secret", bucket, "team-1/", proxy, role_arn, caller).start()
    yield proxy, bucket, broker
    broker.stop()
    proxy.stop()


@pytest_asyncio.fixture
async def moving(lone_tenant, make_datasette):
    proxy, bucket, broker = lone_tenant
    source = {**brokered_source(broker.url, "moving-secret", proxy.url), "multipart_threshold": "5MiB"}
    ds = await make_datasette({SOURCE: {"storage": "s3", "config": source}})
    return ds, proxy, bucket, broker


def move(broker: TenantBroker, prefix: str) -> None:
    """The broker hands the tenant a new folder, and the source's next call fetches keys again.

    A fresh provider is what the refresh point would bring without waiting for it.
    """
    broker.move_to(prefix)
    storage = files_bridge.storage_for(SOURCE)
    storage.credentials = BrokerCredentialsProvider(storage.config)


async def call(ds, step: str, **body) -> httpx.Response:
    return await ds.client.post(
        f"/-/files-s3/upload/{SOURCE}/-/multipart/{step}", json=body, cookies=actor_cookies(ds)
    )


async def test_moved_multipart_upload_ends_with_a_clear_error(moving, s3_server):
    ds, proxy, bucket, broker = moving
    created = await call(
        ds, "create", filename="big.bin", content_type="application/octet-stream", size=len(CONTENT)
    )
    token = created.json()["upload_token"]
    signed = await call(ds, "sign", upload_token=token, part_numbers=[1])
    assert httpx.put(signed.json()["urls"]["1"], content=CONTENT[:PART]).status_code == 200
    move(broker, "team-3/")
    for step in ("sign", "parts", "complete", "abort"):
        answer = await call(ds, step, upload_token=token, part_numbers=[2])
        assert answer.status_code == 409, (step, answer.text)
        [error] = answer.json()["errors"]
        assert f"s3://{bucket}/team-1/" in error and f"s3://{bucket}/team-3/" in error, error
        assert "upload the file again" in error
    # Resuming starts afresh in the new folder, and that upload completes there.
    resumed = await call(
        ds,
        "create",
        filename="big.bin",
        content_type="application/octet-stream",
        size=len(CONTENT),
        resume_token=token,
    )
    assert resumed.status_code == 200 and resumed.json()["resumed"] is False
    new_token = resumed.json()["upload_token"]
    urls = (await call(ds, "sign", upload_token=new_token, part_numbers=[1, 2])).json()["urls"]
    for number, url in urls.items():
        n = int(number)
        assert httpx.put(url, content=CONTENT[(n - 1) * PART : n * PART]).status_code == 200
    done = await call(ds, "complete", upload_token=new_token)
    assert done.status_code == 201, done.text
    assert done.json()["file"]["id"].removeprefix("df-") in str(
        s3_server.client().list_objects_v2(Bucket=bucket, Prefix="team-3/")["Contents"]
    )
    new_keys = {i["AccessKeyId"] for i in broker.issued[1:]}
    assert [r for r in proxy.requests if r.access_key_id in new_keys and r.outside(bucket, "team-3/")] == []


async def test_moved_direct_upload_ends_with_a_clear_error(moving):
    ds, proxy, bucket, broker = moving
    prepared = (
        await ds.client.post(
            f"/-/files/upload/{SOURCE}/-/prepare",
            json={"filename": "a.txt", "content_type": "text/plain", "size": 3},
            cookies=actor_cookies(ds),
        )
    ).json()
    httpx.post(prepared["upload_url"], data=prepared["upload_fields"], files={"file": ("a.txt", b"abc")})
    move(broker, "team-3/")
    answer = await ds.client.post(
        f"/-/files/upload/{SOURCE}/-/complete",
        json={"upload_token": prepared["upload_token"]},
        cookies=actor_cookies(ds),
    )
    assert answer.status_code == 409, answer.text
    assert f"s3://{bucket}/team-1/" in answer.json()["errors"][0]
