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
