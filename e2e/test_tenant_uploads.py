"""Issue 14 in the browser: the bundled uploader under keys scoped to one tenant's folder.

The Datasette here (`datasette serve`) takes its keys and S3Folder
(`s3://e2e-tenant-.../team-1/`) from a broker, and reaches the store through
the ScopedS3Proxy (tests/tenant_proxy.py), which grants those keys only the
tenant session policy of docs/examples and answers S3's AccessDenied to
anything else: the stores here enforce no such policy, so the proxy is the
fault they cannot produce. The presigned URLs Datasette signs point at the
proxy too, so Chromium's POSTs, part PUTs and download GETs pass it, and its
log is the store's view of every request: each test checks from it that none
reached beyond `team-1/` and none was denied.

Keys come from a real STS AssumeRole on moto (TenantBroker, as in
tests/test_tenants.py); LocalStack's S3-only run has no STS, so there a
ScopedKeyBroker hands out fresh keys that only the proxy's grant scopes.
The bucket also holds another tenant's object, which must stay untouched.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from e2e.page_helpers import MIB, PAGE, PartGate, choose, make_file, wait_until
from tests.live_servers import DatasetteProcess, live_config
from tests.tenancy import (
    ScopedKeyBroker,
    TenantBroker,
    assert_stayed_inside,
    brokered_source,
    set_up_tenant_role,
)
from tests.tenant_proxy import ScopedS3Proxy

# ScopedKeyBroker's keys exist only in the proxy; Ceph RGW checks every signature,
# a POST policy's too, against its own users (not yet made per tenant here).
pytestmark = pytest.mark.store("takes-any-key", reason="the tenant keys are made up by ScopedKeyBroker")

PREFIX = "team-1/"
SECRET = "team-1-broker-secret"
THEIRS = "team-2/theirs.txt"


@pytest.fixture
def proxy(browser_s3):
    """The ScopedS3Proxy in front of the store the browser uploads to."""
    server = ScopedS3Proxy(browser_s3.port).start()
    yield server
    server.stop()


def start_broker(browser_s3, proxy, bucket):
    """Scoped credentials for team-1/: STS session keys on moto, proxy-granted keys on LocalStack."""
    if browser_s3.kind == "moto":
        role_arn, caller = set_up_tenant_role(browser_s3.endpoint_url, bucket)
        return TenantBroker(SECRET, bucket, PREFIX, proxy, role_arn, caller).start()
    return ScopedKeyBroker(SECRET, bucket, PREFIX, proxy, browser_s3.secret_access_key).start()


@pytest.fixture
def site(browser_s3, proxy):
    """A Datasette whose one source (`s3files`, multipart from 5 MiB) has only team-1/'s keys,
    on a fresh bucket with a CORS rule for its origin and another tenant's object in it."""
    bucket = f"e2e-tenant-{uuid.uuid4().hex[:12]}"
    broker = start_broker(browser_s3, proxy, bucket)
    source = {**brokered_source(broker.url, SECRET, proxy.url), "multipart_threshold": "5MiB"}
    datasette = DatasetteProcess(live_config(source))
    browser_s3.create_bucket(bucket, cors_origins=[datasette.url])
    browser_s3.client().put_object(Bucket=bucket, Key=THEIRS, Body=b"theirs")
    datasette.start()
    datasette.bucket = bucket
    yield datasette
    datasette.stop()
    broker.stop()
    # Another tenant's object is still there, as it was.
    assert browser_s3.client().get_object(Bucket=bucket, Key=THEIRS)["Body"].read() == b"theirs"


def object_key(row, path) -> str:
    """The key a finished row's file has: team-1/<id>/<filename>."""
    file_id = row.get_attribute("data-file-id")
    assert file_id and file_id.startswith("df-")
    return f"{PREFIX}{file_id.removeprefix('df-')}/{Path(path).name}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def answered(proxy, operation: str, presigned: bool = False) -> list:
    """The logged requests of one operation that carried keys and were not denied;
    `presigned`: only those with the keys in the URL, as the browser sends them."""
    return [
        r
        for r in proxy.requests
        if r.operation == operation
        and r.access_key_id
        and not r.denied
        and (not presigned or "X-Amz-Signature=" in r.query)
    ]


def test_single_post_upload(page, site, browser_s3, proxy, tmp_path):
    path = make_file(tmp_path, "small.bin", MIB + 17)
    page.goto(PAGE)
    choose(page, path)
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=30_000)
    key = object_key(row, path)
    stored = browser_s3.client().get_object(Bucket=site.bucket, Key=key)["Body"].read()
    assert sha256(stored) == sha256(Path(path).read_bytes())
    [post] = answered(proxy, "PostObject")
    assert post.keys == (key,) and post.status in (200, 201, 204)
    assert answered(proxy, "UploadPart") == []
    assert_stayed_inside(proxy, site.bucket)


def test_multipart_upload(page, site, browser_s3, proxy, tmp_path):
    path = make_file(tmp_path, "big.bin", 12 * MIB + 321)  # parts of 5, 5 and 2 MiB
    page.goto(PAGE)
    choose(page, path)
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=60_000)
    key = object_key(row, path)
    client = browser_s3.client()
    assert client.head_object(Bucket=site.bucket, Key=key)["ETag"].strip('"').endswith("-3")
    stored = client.get_object(Bucket=site.bucket, Key=key)["Body"].read()
    assert sha256(stored) == sha256(Path(path).read_bytes())
    parts = answered(proxy, "UploadPart")
    assert {r.keys for r in parts} == {(key,)}
    assert {r.status for r in parts} == {200}
    assert len(parts) == 3
    assert_stayed_inside(proxy, site.bucket)


def test_cancel_aborts_the_multipart_upload_mid_way(page, site, browser_s3, proxy, tmp_path):
    """Part 1 reaches the bucket and the rest are held in Chromium (PartGate), so the
    cancel lands mid-upload every time; Datasette then aborts the upload with the tenant's keys."""
    path = make_file(tmp_path, "cancelled.bin", 12 * MIB + 321)
    page.goto(PAGE)
    gate = PartGate(page, let_through=1)
    choose(page, path)
    wait_until(page, lambda: answered(proxy, "UploadPart") and gate.held)
    client = browser_s3.client()
    [open_upload] = client.list_multipart_uploads(Bucket=site.bucket, Prefix=PREFIX)["Uploads"]
    page.click(".dfs3-file .dfs3-cancel")
    expect(page.locator(".dfs3-file")).to_have_attribute("data-status", "cancelled")
    wait_until(page, lambda: answered(proxy, "AbortMultipartUpload"))
    [abort] = answered(proxy, "AbortMultipartUpload")
    assert abort.keys == (open_upload["Key"],) and abort.status == 204
    assert client.list_multipart_uploads(Bucket=site.bucket, Prefix=PREFIX).get("Uploads") is None
    assert client.list_objects_v2(Bucket=site.bucket, Prefix=PREFIX).get("Contents") is None
    assert len(answered(proxy, "UploadPart")) == 1
    assert_stayed_inside(proxy, site.bucket)


def test_download_in_the_page(page, site, proxy, tmp_path):
    """The file page's download link: Datasette redirects to a GET presigned with the
    tenant's keys, and Chromium saves what the store sends through the proxy."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"team-1's notes\n" * 1000)
    page.goto(PAGE)
    choose(page, str(path))
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=30_000)
    key = object_key(row, path)
    page.goto(f"/-/files/{row.get_attribute('data-file-id')}")
    with page.expect_download() as download:
        page.click("text=Download notes.txt")
    assert Path(download.value.path()).read_bytes() == path.read_bytes()
    assert download.value.suggested_filename == "notes.txt"
    [get] = answered(proxy, "GetObject", presigned=True)
    assert get.keys == (key,) and get.status == 200
    assert_stayed_inside(proxy, site.bucket)
