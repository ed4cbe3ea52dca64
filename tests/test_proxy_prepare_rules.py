"""Proxy sources (`direct_uploads: false`) hold a prepare to the same rules as
a direct upload: allowed_content_types, a bare MIME type, a size, max_file_size.
datasette-files' own prepare checks none of them."""

import pytest

from tests.helpers import actor_cookies, send_through_datasette


@pytest.fixture
async def images_only(make_datasette, bucket):
    config = bucket.source_config(direct_uploads=False, allowed_content_types=["image/*"], max_file_size=1000)
    return await make_datasette({"proxied": {"storage": "s3", "config": config}})


async def prepare(ds, **body):
    return await ds.client.post("/-/files/upload/proxied/-/prepare", json=body, cookies=actor_cookies(ds))


@pytest.mark.parametrize(
    "body, message",
    [
        ({"filename": "a.html", "content_type": "text/html", "size": 5}, "not allowed here"),
        ({"filename": "a.png", "content_type": "image/png;;; <x>", "size": 5}, "MIME type"),
        ({"filename": "a.png", "content_type": "image/png\r\nX-Evil: 1", "size": 5}, "MIME type"),
        ({"filename": "a.png", "content_type": "image/png", "size": 5000}, "too large"),
        ({"filename": "a.png", "content_type": "image/png"}, "size is required"),
    ],
)
async def test_proxy_prepare_refuses_what_a_direct_prepare_refuses(images_only, bucket, body, message):
    response = await prepare(images_only, **body)
    assert response.status_code == 400, response.text
    assert response.json()["ok"] is False
    assert message in response.json()["errors"][0]
    assert not bucket.keys(bucket.prefix)


async def test_proxy_upload_of_an_allowed_type_is_stored_with_the_clean_type(images_only, bucket):
    cookies = actor_cookies(images_only)
    response = await prepare(images_only, filename="r.png", content_type="Image/PNG", size=4)
    assert response.status_code == 200, response.text
    done = await send_through_datasette(images_only, cookies, response.json(), b"\x89PNG", "r.png", "proxied")
    assert done.status_code == 201, done.text
    assert done.json()["file"]["content_type"] == "image/png"


# --- no way around Datasette: the bundled uploader's endpoints -----------------

PART_SIZED = {"filename": "big.bin", "content_type": "application/octet-stream", "size": 6 * 1024**2}


def assert_through_datasette_only(response):
    assert response.status_code == 400, response.text
    assert response.json()["ok"] is False
    assert "direct_uploads: false" in response.json()["errors"][0]


async def test_proxy_source_opens_no_multipart_upload_in_the_bucket(images_only, bucket):
    # direct_uploads: false is the README's answer to a store that does not enforce
    # POST policies: no part URL may reach the bucket past Datasette there.
    cookies = actor_cookies(images_only)
    page = await images_only.client.get("/-/files-s3/upload/proxied", cookies=cookies)
    assert page.status_code == 302 and page.headers["location"] == "/-/files/upload/proxied"
    for step in ("-/multipart/create", "-/bucket"):
        response = await images_only.client.post(
            f"/-/files-s3/upload/proxied/{step}", json=PART_SIZED, cookies=cookies
        )
        assert_through_datasette_only(response)
    assert not bucket.multipart_uploads()


async def test_upload_begun_before_the_switch_to_proxy_mode_is_not_continued(make_datasette, bucket):
    direct = await make_datasette({"proxied": {"storage": "s3", "config": bucket.source_config()}})
    cookies = actor_cookies(direct)
    created = await direct.client.post(
        "/-/files-s3/upload/proxied/-/multipart/create", json=PART_SIZED, cookies=cookies
    )
    token = created.json()["upload_token"]
    # The same Datasette (its secret, its source) restarted with direct_uploads: false.
    proxied = await make_datasette(
        {"proxied": {"storage": "s3", "config": bucket.source_config(direct_uploads=False)}}
    )
    for step, extra in (("sign", {"part_numbers": [1]}), ("parts", {}), ("complete", {})):
        response = await proxied.client.post(
            f"/-/files-s3/upload/proxied/-/multipart/{step}",
            json={"upload_token": token, **extra},
            cookies=cookies,
        )
        assert_through_datasette_only(response)
