"""Single-request uploads by presigned PUT (`upload_method`), and conditional writes:
a key we confirmed cannot be written again through its own presigned URLs."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest

from datasette_files_s3 import files_bridge, uploads
from tests.helpers import actor_cookies, complete, post_to_bucket, prepare

CONTENT = b"sent by presigned PUT\n" * 50


def sha256_b64(content: bytes) -> str:
    return base64.b64encode(hashlib.sha256(content).digest()).decode()


@pytest.fixture
async def put_ds(make_datasette, bucket):
    config = bucket.source_config(upload_method="put")
    return await make_datasette({"s3files": {"storage": "s3", "config": config}})


def put_to_bucket(http, prepared: dict, content: bytes):
    """Send the PUT as the bundled uploader does: the signed headers, the bytes."""
    assert prepared["upload_method"] == "PUT"
    return http.put(prepared["upload_url"], content=content, headers=prepared["upload_headers"])


async def test_put_upload_is_confirmed_and_its_hash_recorded(put_ds, bucket, http):
    cookies = actor_cookies(put_ds)
    prepared = (
        await prepare(put_ds, cookies, size=len(CONTENT), sha256=sha256_b64(CONTENT), accepts_put=True)
    ).json()
    assert prepared["upload_fields"] == {}
    assert prepared["upload_headers"]["If-None-Match"] == "*"
    sent = put_to_bucket(http, prepared, CONTENT)
    assert sent.status_code == 200, sent.text
    completed = await complete(put_ds, cookies, prepared["upload_token"])
    assert completed.status_code == 201, completed.text
    file = completed.json()["file"]
    assert file["content_hash"] == "sha256:" + hashlib.sha256(CONTENT).hexdigest()
    assert [bucket.get(key) for key in bucket.keys(bucket.prefix)] == [CONTENT]


async def test_put_upload_of_other_bytes_is_refused(put_ds, bucket, http):
    """Confirm checks a PUT as it checks a POST: other bytes of the same size never register.
    (A store that checks the signed SHA-256 refuses them itself; moto takes them.)"""
    cookies = actor_cookies(put_ds)
    prepared = (
        await prepare(put_ds, cookies, size=len(CONTENT), sha256=sha256_b64(CONTENT), accepts_put=True)
    ).json()
    other = CONTENT.replace(b"PUT", b"BAD")
    put_to_bucket(http, prepared, other)
    completed = await complete(put_ds, cookies, prepared["upload_token"])
    assert completed.status_code == 400, completed.text
    assert completed.json()["ok"] is False


async def test_a_confirmed_put_key_cannot_be_written_again_with_its_url(put_ds, bucket, http):
    """If-None-Match: * is signed into the URL: the store refuses the second PUT (412)."""
    cookies = actor_cookies(put_ds)
    prepared = (await prepare(put_ds, cookies, size=len(CONTENT), accepts_put=True)).json()
    assert put_to_bucket(http, prepared, CONTENT).status_code == 200
    completed = await complete(put_ds, cookies, prepared["upload_token"])
    assert completed.status_code == 201, completed.text
    again = put_to_bucket(http, prepared, CONTENT.upper())
    assert again.status_code == 412, again.text
    assert [bucket.get(key) for key in bucket.keys(bucket.prefix)] == [CONTENT]


@pytest.mark.store("conditional-complete")
async def test_a_confirmed_key_cannot_be_completed_onto_by_multipart(ds, bucket):
    """CompleteMultipartUpload sends If-None-Match: *: no multipart upload replaces a key."""
    cookies = actor_cookies(ds)
    prepared = (await prepare(ds, cookies, size=len(CONTENT))).json()
    post_to_bucket(prepared, CONTENT)
    completed = await complete(ds, cookies, prepared["upload_token"])
    assert completed.status_code == 201, completed.text
    [key] = bucket.keys(bucket.prefix)
    path = key.removeprefix(bucket.prefix)
    storage = files_bridge.storage_for("s3files")
    upload_id = await storage.create_multipart(path, "text/plain")
    etag = await storage.upload_part(path, upload_id, 1, b"replacement")
    with pytest.raises(Exception) as refused:
        await storage.complete_multipart(path, upload_id, [{"PartNumber": 1, "ETag": etag}])
    assert "PreconditionFailed" in str(refused.value) or "412" in str(refused.value)
    await storage.abort_multipart(path, upload_id)
    assert bucket.get(key) == CONTENT


async def test_form_only_client_is_told_to_use_the_bundled_uploader(put_ds, bucket):
    """datasette-files' own uploader can only POST a form, which a PUT source cannot take."""
    response = await prepare(put_ds, actor_cookies(put_ds), size=3)
    assert response.status_code == 400
    [message] = response.json()["errors"]
    assert "presigned PUT" in message and "/-/files-s3/upload/s3files" in message


async def test_auto_gives_a_post_and_the_same_keys_put(ds, bucket):
    prepared = (await prepare(ds, actor_cookies(ds), size=3, accepts_put=True)).json()
    assert prepared["upload_method"] == "POST"
    fallback = prepared["put_fallback"]
    assert fallback["upload_method"] == "PUT"
    assert prepared["upload_fields"]["key"] in fallback["upload_url"].split("?")[0]
    form_only = (await prepare(ds, actor_cookies(ds), size=3)).json()
    assert "put_fallback" not in form_only


async def test_auto_signs_no_put_fallback_once_a_post_is_confirmed(ds, bucket):
    """A confirmed POST settles that the store takes POST Object: the PUT beside
    every later POST would only cost a signature."""
    cookies = actor_cookies(ds)
    prepared = (await prepare(ds, cookies, size=len(CONTENT), accepts_put=True)).json()
    assert "put_fallback" in prepared
    post_to_bucket(prepared, CONTENT)
    completed = await complete(ds, cookies, prepared["upload_token"])
    assert completed.status_code == 201, completed.text
    later = (await prepare(ds, cookies, size=3, accepts_put=True)).json()
    assert later["upload_method"] == "POST"
    assert "put_fallback" not in later


async def test_a_post_tickets_key_written_by_its_put_fallback_keeps_the_fallback(ds, bucket, http):
    """The object, not the client, tells which request wrote it: one sent by the
    PUT fallback (as after a 501) proves nothing about POST, said or not."""
    cookies = actor_cookies(ds)
    prepared = (await prepare(ds, cookies, size=len(CONTENT), accepts_put=True)).json()
    assert put_to_bucket(http, prepared["put_fallback"], CONTENT).status_code == 200
    completed = await complete(ds, cookies, prepared["upload_token"])
    assert completed.status_code == 201, completed.text
    later = (await prepare(ds, cookies, size=3, accepts_put=True)).json()
    assert later["put_fallback"]["upload_method"] == "PUT"


async def test_a_put_key_written_again_before_its_url_expires_is_not_served(put_ds, bucket, http):
    """On a store that ignores If-None-Match (Ceph 16) the PUT URL can write the key
    again until it expires; downloads then compare size and ETag, as doctor's
    `conditional` warning says. (Written here with the test's own keys: the store
    under test honours If-None-Match.)"""
    cookies = actor_cookies(put_ds)
    prepared = (await prepare(put_ds, cookies, size=len(CONTENT), accepts_put=True)).json()
    assert put_to_bucket(http, prepared, CONTENT).status_code == 200
    completed = await complete(put_ds, cookies, prepared["upload_token"])
    assert completed.status_code == 201, completed.text
    row = await files_bridge.file_record(put_ds, completed.json()["file"]["id"])
    [key] = bucket.keys(bucket.prefix)
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=CONTENT.upper())
    with pytest.raises(uploads.ObjectChanged):
        await uploads.check_unchanged(put_ds, files_bridge.storage_for("s3files"), row, time.time())
