"""POST /-/files-s3/upload/{source}/-/bucket: the same-origin check the uploader
makes when a request to the bucket got no answer at all, to tell a missing or
denied bucket from a CORS block."""

import pytest

from tests.helpers import actor_cookies

URL = "/-/files-s3/upload/s3files/-/bucket"


async def check(ds, cookies=None, **kwargs):
    return await ds.client.post(
        URL, json={}, cookies=cookies if cookies is not None else actor_cookies(ds), **kwargs
    )


async def test_bucket_that_is_there_is_ok(ds):
    response = await check(ds)
    assert (response.status_code, response.json()) == (200, {"ok": True})


async def test_missing_bucket_is_named(make_datasette, bucket):
    config = bucket.source_config(bucket="no-such-bucket-xyz")
    ds = await make_datasette({"s3files": {"storage": "s3", "config": config}})
    response = await check(ds)
    assert response.status_code == 502
    assert response.json()["retryable"] is False
    (message,) = response.json()["errors"]
    assert message.startswith("datasette-files source 's3files': bucket 'no-such-bucket-xyz' does not exist")


async def test_check_asks_s3_again_after_a_remembered_success(ds, bucket):
    """Prepare remembers that the bucket was there; the uploader asks after a
    request to the bucket got no answer, and by then it may be gone."""
    if not bucket.server.can_create_buckets:
        pytest.skip("deletes the test's bucket")
    prepared = await ds.client.post(
        "/-/files/upload/s3files/-/prepare",
        json={"filename": "a.txt", "content_type": "text/plain", "size": 3},
        cookies=actor_cookies(ds),
    )
    assert prepared.status_code == 200, prepared.text
    bucket.client.delete_bucket(Bucket=bucket.name)
    response = await check(ds)
    assert response.status_code == 502
    assert f"bucket '{bucket.name}' does not exist" in response.json()["errors"][0]


async def test_check_needs_upload_permission(ds):
    response = await check(ds, cookies={})
    assert response.status_code == 403
    assert response.json()["errors"] == ["Permission denied: you need files-upload on source 's3files'"]


async def test_check_is_a_json_post(ds):
    assert (await ds.client.get(URL, cookies=actor_cookies(ds))).status_code == 405
    response = await ds.client.post(URL, content=b"{}", cookies=actor_cookies(ds))
    assert response.status_code == 400 and response.json()["ok"] is False
