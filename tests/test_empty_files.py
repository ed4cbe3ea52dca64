"""Zero-byte files upload like any other: S3 stores them, so we accept them."""

import httpx
import pytest

from tests.helpers import actor_cookies, prepare, send_through_datasette, upload
from tests.test_upload_policy import conditions_by_name, decode_policy


async def test_prepare_signs_a_policy_for_exactly_zero_bytes(ds):
    response = await prepare(ds, actor_cookies(ds), filename="empty.txt", size=0)
    assert response.status_code == 200, response.text
    policy = decode_policy(response.json()["upload_fields"])
    assert conditions_by_name(policy)["content-length-range"] == (0, 0)


async def test_empty_file_uploads_to_the_bucket_and_is_registered(ds, bucket):
    data = await upload(ds, actor_cookies(ds), b"", filename="empty.txt")
    file = data["file"]
    assert file["size"] == 0 and file["filename"] == "empty.txt"
    (key,) = bucket.keys(bucket.prefix)
    assert bucket.get(key) == b""
    listed = (await ds.client.get(f"/-/files/{file['id']}.json")).json()
    assert listed["size"] == 0
    redirect = await ds.client.get(file["download_url"])
    assert httpx.get(redirect.headers["location"]).content == b""


@pytest.mark.store("permissive", reason="the store must take the byte for confirm to judge it")
async def test_complete_refuses_a_non_empty_object_for_an_empty_file(ds, bucket):
    cookies = actor_cookies(ds)
    prepared = (await prepare(ds, cookies, filename="empty.txt", size=0)).json()
    # moto ignores the policy's 0..0 range, as real S3 would not: confirm catches it.
    httpx.post(prepared["upload_url"], data=prepared["upload_fields"], files={"file": ("e", b"x")})
    response = await ds.client.post(
        "/-/files/upload/s3files/-/complete", json={"upload_token": prepared["upload_token"]}, cookies=cookies
    )
    assert response.status_code == 400
    assert "Uploaded object is 1 bytes but 0 were declared" in response.json()["errors"][0]
    assert bucket.keys(bucket.prefix) == []


@pytest.mark.store("enforcing")
async def test_store_refuses_a_byte_for_an_empty_file(ds, bucket):
    prepared = (await prepare(ds, actor_cookies(ds), filename="empty.txt", size=0)).json()
    refused = httpx.post(prepared["upload_url"], data=prepared["upload_fields"], files={"file": ("e", b"x")})
    assert refused.status_code == 400 and "<Code>EntityTooLarge</Code>" in refused.text
    assert bucket.keys(bucket.prefix) == []


async def test_multipart_create_sends_empty_files_to_prepare(ds, bucket):
    response = await ds.client.post(
        "/-/files-s3/upload/s3files/-/multipart/create",
        json={"filename": "empty.bin", "size": 0},
        cookies=actor_cookies(ds),
    )
    assert response.status_code == 400
    assert "/-/files/upload/s3files/-/prepare" in response.json()["errors"][0]
    assert bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads") is None


async def test_proxy_mode_uploads_an_empty_file(make_datasette, bucket):
    ds = await make_datasette(
        {"proxied": {"storage": "s3", "config": bucket.source_config(direct_uploads=False)}}
    )
    cookies = actor_cookies(ds)
    prepared = (await prepare(ds, cookies, source="proxied", filename="empty.txt", size=0)).json()
    done = await send_through_datasette(ds, cookies, prepared, b"", filename="empty.txt", source="proxied")
    assert done.status_code == 201, done.text
    assert done.json()["file"]["size"] == 0
    (key,) = bucket.keys(bucket.prefix)
    assert bucket.get(key) == b""
