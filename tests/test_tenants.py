"""Issue 14: every feature under credentials scoped to one tenant's prefix.

The Datasette here takes its keys and S3Folder (`s3://shared-.../team-1/`)
from a TenantBroker: real STS session credentials from s3_server, limited by
docs/examples/tenant-session-policy.json. moto ignores session policies and
s3:prefix conditions (docs/tenants.md), so the ScopedS3Proxy in front of it
enforces them and answers S3's exact AccessDenied: every denial in these
tests is the proxy's, a fault moto cannot produce. Its request log is the
store's view of what happened: each test checks from it that no request
reached beyond the tenant's prefix.

Two tenants side by side, and the broker moving a tenant, are in
tests/test_two_tenants.py. `proxy` and `shared_bucket` are in conftest.py.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import time

import httpx
import pytest
import pytest_asyncio
from PIL import Image

from datasette_files_s3 import bucket_config, files_bridge, tickets
from tests.cli_support import check_lines, files_s3
from tests.helpers import (
    actor_cookies,
    datasette_config,
    post_to_bucket,
    prepare,
    send_through_datasette,
    upload,
)
from tests.tenancy import (
    EXAMPLES,
    TenantBroker,
    assert_stayed_inside,
    brokered_source,
    round_trip,
    set_up_tenant_role,
)

# moto itself: its IAM and STS, which LocalStack's S3-only run does not have.
pytestmark = pytest.mark.store("moto", reason="uses moto's IAM and STS")


SOURCE = "tenant"
PREFIX = "team-1/"
SECRET = "team-1-broker-secret"
ORIGIN = "https://team-1.example.com"
PART = 5 * 1024 * 1024
CONTENT = os.urandom(2 * PART + 4321)  # three parts: 5 MiB, 5 MiB and a short one
MULTIPART = f"/-/files-s3/upload/{SOURCE}/-/multipart"


@pytest.fixture
def broker(s3_server, proxy, shared_bucket):
    role_arn, caller = set_up_tenant_role(s3_server.endpoint_url, shared_bucket)
    server = TenantBroker(SECRET, shared_bucket, PREFIX, proxy, role_arn, caller).start()
    yield server
    server.stop()


def tenant_config(broker, proxy, **options) -> dict:
    """The source block of a tenant's Datasette: keys and S3Folder from the broker, S3 through the proxy."""
    return {**brokered_source(broker.url, SECRET, proxy.url), "multipart_threshold": "5MiB", **options}


@pytest_asyncio.fixture
async def tds(make_datasette, broker, proxy):
    """The tenant's Datasette, with one source whose credentials only allow team-1/."""
    return await make_datasette({SOURCE: {"storage": "s3", "config": tenant_config(broker, proxy)}})


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


async def multipart(ds, step: str, **body) -> httpx.Response:
    return await ds.client.post(f"{MULTIPART}/{step}", json=body, cookies=actor_cookies(ds))


async def create(ds, content: bytes = CONTENT, **extra) -> dict:
    response = await multipart(
        ds, "create", filename="big.bin", content_type="application/octet-stream", size=len(content), **extra
    )
    assert response.status_code == 200, response.text
    return response.json()


async def put_parts(ds, token: str, numbers: list[int], content: bytes = CONTENT) -> None:
    """Sign the parts and PUT them straight to the bucket, as the browser does."""
    signed = await multipart(ds, "sign", upload_token=token, part_numbers=numbers)
    assert signed.status_code == 200, signed.text
    for number, url in signed.json()["urls"].items():
        n = int(number)
        response = httpx.put(url, content=content[(n - 1) * PART : n * PART], timeout=60)
        assert response.status_code == 200, response.text


def open_uploads(s3_server, bucket: str) -> list[str]:
    """The keys of the bucket's incomplete multipart uploads, as the bucket owner sees them."""
    return sorted(
        u["Key"] for u in s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    )


# --- the plugin's features --------------------------------------------------------------------


async def test_direct_upload_download_and_delete(tds, proxy, shared_bucket, s3_server):
    file = await round_trip(tds, SOURCE, b"tenant bytes", "t.txt")
    key = PREFIX + file["id"].removeprefix("df-") + "/t.txt"
    assert s3_server.client().get_object(Bucket=shared_bucket, Key=key)["Body"].read() == b"tenant bytes"
    deleted = await tds.client.post(f"/-/files/{file['id']}/-/delete", cookies=actor_cookies(tds))
    assert deleted.status_code == 200, deleted.text
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=shared_bucket, Prefix=PREFIX)
    assert_stayed_inside(proxy, shared_bucket)


async def test_multipart_upload_resumes_and_completes(tds, proxy, shared_bucket):
    token = (await create(tds))["upload_token"]
    await put_parts(tds, token, [1])
    # The page reloads: the browser sends the token it remembered for this file.
    resumed = await create(tds, resume_token=token)
    assert resumed["resumed"] is True and [p["part_number"] for p in resumed["parts"]] == [1]
    await put_parts(tds, token, [2, 3])
    listed = await multipart(tds, "parts", upload_token=token)
    assert [p["part_number"] for p in listed.json()["parts"]] == [1, 2, 3]
    completed = await multipart(tds, "complete", upload_token=token)
    assert completed.status_code == 201, completed.text
    redirect = await tds.client.get(completed.json()["file"]["download_url"])
    assert httpx.get(redirect.headers["location"], timeout=60).content == CONTENT
    assert_stayed_inside(proxy, shared_bucket)


async def test_cancelled_multipart_upload_is_aborted(tds, proxy, shared_bucket, s3_server):
    token = (await create(tds))["upload_token"]
    await put_parts(tds, token, [1])
    assert [k for k in open_uploads(s3_server, shared_bucket) if k.startswith(PREFIX)] != []
    cancelled = await multipart(tds, "abort", upload_token=token)
    assert cancelled.json() == {"ok": True}
    assert open_uploads(s3_server, shared_bucket) == ["team-2/theirs.bin"]
    assert_stayed_inside(proxy, shared_bucket)


async def test_listing_shows_the_tenants_files_only(tds, proxy, shared_bucket):
    file = (await upload(tds, actor_cookies(tds), b"listed", filename="listed.txt", source=SOURCE))["file"]
    files, _ = await files_bridge.storage_for(SOURCE).list_files()
    assert [f.path for f in files] == [file["id"].removeprefix("df-") + "/listed.txt"]
    page = await tds.client.get(f"/-/files/source/{SOURCE}")
    assert page.status_code == 200 and "listed.txt" in page.text
    assert_stayed_inside(proxy, shared_bucket)


async def test_thumbnail_of_an_image(tds, proxy, shared_bucket):
    cookies = actor_cookies(tds)
    file = (
        await upload(tds, cookies, png_bytes(), filename="a.png", content_type="image/png", source=SOURCE)
    )["file"]
    thumbnail = await tds.client.get(file["thumbnail_url"])
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] in ("image/jpeg", "image/png")
    assert Image.open(io.BytesIO(thumbnail.content)).size == (64, 48)
    assert_stayed_inside(proxy, shared_bucket)


async def test_proxy_path_without_direct_uploads(make_datasette, broker, proxy, shared_bucket, s3_server):
    ds = await make_datasette(
        {SOURCE: {"storage": "s3", "config": tenant_config(broker, proxy, direct_uploads=False)}}
    )
    cookies = actor_cookies(ds)
    content = b"through datasette " * 1000
    prepared = await ds.client.post(
        f"/-/files/upload/{SOURCE}/-/prepare",
        json={"filename": "p.txt", "content_type": "text/plain", "size": len(content)},
        cookies=cookies,
    )
    done = await send_through_datasette(ds, cookies, prepared.json(), content, "p.txt", SOURCE)
    assert done.status_code == 201, done.text
    key = PREFIX + done.json()["file"]["id"].removeprefix("df-") + "/p.txt"
    assert s3_server.client().get_object(Bucket=shared_bucket, Key=key)["Body"].read() == content
    assert_stayed_inside(proxy, shared_bucket)


async def test_bucket_check_passes_with_prefix_only_listing(tds, proxy, shared_bucket):
    # The uploader's "is the bucket there?" question: HeadBucket would be denied to a tenant.
    answer = await tds.client.post(
        f"/-/files-s3/upload/{SOURCE}/-/bucket", json={}, cookies=actor_cookies(tds)
    )
    assert answer.json() == {"ok": True}
    assert_stayed_inside(proxy, shared_bucket)


# --- the commands: cleanup, doctor, cors -------------------------------------------------------


@pytest.fixture
def config_file(tmp_path, broker, proxy):
    path = tmp_path / "datasette.json"
    path.write_text(
        json.dumps(datasette_config({SOURCE: {"storage": "s3", "config": tenant_config(broker, proxy)}}))
    )
    return str(path)


@pytest_asyncio.fixture
async def abandoned(tmp_path, make_datasette, broker, proxy, shared_bucket, s3_server):
    """An internal database recording an abandoned multipart upload (one part sent) and an
    abandoned direct upload, both with expired tokens, plus a fresh multipart upload."""
    internal = str(tmp_path / "internal.db")
    ds = await make_datasette(
        {SOURCE: {"storage": "s3", "config": tenant_config(broker, proxy)}}, internal=internal
    )
    stale = (await create(ds))["upload_token"]
    await put_parts(ds, stale, [1])
    fresh = await create(ds, CONTENT[: PART + 1])
    # A direct upload sent to the bucket but never completed.
    prepared = await prepare(ds, actor_cookies(ds), source=SOURCE, filename="never.txt", size=5)
    post_to_bucket(prepared.json(), b"never", "never.txt")
    fresh_id = tickets.read_ticket(ds, fresh["upload_token"]).file_id
    with sqlite3.connect(internal) as db:
        db.execute(
            "UPDATE datasette_files_s3_pending SET expires_at = ? WHERE file_id != ?",
            [time.time() - 3 * 3600, fresh_id],
        )
    proxy.clear_log()
    return internal


def test_cleanup_works_inside_the_prefix_from_its_own_records(
    abandoned, config_file, proxy, shared_bucket, s3_server
):
    result = files_s3("cleanup", SOURCE, "-c", config_file, "--internal", abandoned)
    assert result.exit_code == 0, result.output
    # The expired multipart upload is aborted and the unconfirmed object deleted; the fresh upload
    # and the other tenant's upload stay.
    uploads = open_uploads(s3_server, shared_bucket)
    assert len(uploads) == 2 and "team-2/theirs.bin" in uploads
    assert [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=shared_bucket)["Contents"]] == [
        "team-2/theirs.txt"
    ]
    assert "abort team-1/" in result.output and "delete team-1/" in result.output
    # What it could not do, said once: uploads it has no record of are the lifecycle rule's job.
    assert "not permitted with these credentials" in result.output
    assert "AbortIncompleteMultipartUpload" in result.output
    # Listing multipart uploads is bucket-wide in IAM: the only denial, and never outside the prefix.
    assert_stayed_inside(proxy, shared_bucket, denied_ok=("ListMultipartUploads",))


def test_cleanup_without_internal_database_says_what_it_cannot_clean(
    config_file, proxy, shared_bucket, s3_server
):
    result = files_s3("cleanup", SOURCE, "-c", config_file)
    assert result.exit_code == 0, result.output
    assert "not permitted with these credentials" in result.output
    assert "Traceback" not in result.output
    assert open_uploads(s3_server, shared_bucket) == ["team-2/theirs.bin"]
    assert proxy.outside(shared_bucket, PREFIX) == []


def test_doctor_reports_bucket_level_checks_it_may_not_run(config_file, proxy, shared_bucket, s3_server):
    s3_server.client().put_bucket_cors(
        Bucket=shared_bucket, CORSConfiguration={"CORSRules": [bucket_config.needed_cors_rule([ORIGIN])]}
    )
    result = files_s3("doctor", SOURCE, "-c", config_file, "--origin", ORIGIN)
    lines = check_lines(result.output)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert lines["bucket"].startswith("[PASS]") and f"'{shared_bucket}'" in lines["bucket"]
    for name in ("write", "read", "range read", "presign", "delete", f"cors {ORIGIN}"):
        assert lines[name].startswith("[PASS]"), lines[name]
    assert lines["lifecycle"].startswith("[WARN]")
    assert "not permitted with these credentials" in lines["lifecycle"]
    assert "ask the bucket owner" in lines["lifecycle"] and PREFIX in lines["lifecycle"]
    assert proxy.outside(shared_bucket, PREFIX) == [r for r in proxy.requests if r.denied]
    assert {r.operation for r in proxy.requests if r.denied} <= {
        "HeadBucket",
        "GetBucketLifecycleConfiguration",
    }


def test_cors_command_says_reading_the_rules_is_not_permitted(config_file, proxy, shared_bucket):
    result = files_s3("cors", SOURCE, "-c", config_file, "--origin", ORIGIN)
    assert result.exit_code == 0, result.output
    assert "not permitted with these credentials" in result.output
    assert "ask the bucket owner" in result.output
    # The rule the owner needs is printed, ready to hand over.
    assert ORIGIN in result.output and '"ETag"' in result.output


def test_cors_apply_fails_clearly_when_writing_the_rules_is_not_permitted(
    config_file, proxy, shared_bucket, s3_server
):
    result = files_s3("cors", SOURCE, "-c", config_file, "--origin", ORIGIN, "--apply")
    assert result.exit_code == 1
    assert "not permitted with these credentials" in result.output and "Traceback" not in result.output
    # The bucket's rules were not changed.
    with pytest.raises(Exception, match="NoSuchCORSConfiguration"):
        s3_server.client().get_bucket_cors(Bucket=shared_bucket)


def test_cleanup_lifecycle_says_installing_the_rule_is_not_permitted(config_file, proxy, shared_bucket):
    result = files_s3("cleanup", SOURCE, "-c", config_file, "--lifecycle")
    assert result.exit_code == 1
    assert "not permitted with these credentials" in result.output and "Traceback" not in result.output
    assert "AbortIncompleteMultipartUpload" in result.output


def test_readme_shows_the_tested_tenant_policy():
    # The policy users copy from the README is the very file the proxy enforces in these tests.
    readme = (EXAMPLES.parent.parent / "README.md").read_text()
    section = readme.split("### Minimum IAM policies", 1)[1]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    assert json.loads(block) == json.loads((EXAMPLES / "tenant-session-policy.json").read_text())
    assert "docs/examples/single-tenant-policy.json" in section
