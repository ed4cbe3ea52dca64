"""The proxy fallback (direct_uploads: false) and thumbnails that never pull
large objects through Datasette."""

import io

import httpx
from PIL import Image

from tests.helpers import (
    actor_cookies,
    assert_icon_and_none_cached,
    send_through_datasette,
    thumbnail_after_upload,
    upload,
)


def png_bytes(size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_proxy_fallback_streams_through_datasette_into_bucket(make_datasette, bucket):
    ds = await make_datasette(
        {"proxied": {"storage": "s3", "config": bucket.source_config(direct_uploads=False)}}
    )
    cookies = actor_cookies(ds)
    content = b"through datasette " * 1000
    prepared = (
        await ds.client.post(
            "/-/files/upload/proxied/-/prepare",
            json={"filename": "p.txt", "content_type": "text/plain", "size": len(content)},
            cookies=cookies,
        )
    ).json()
    token = prepared["upload_token"]
    assert prepared["upload_url"] == f"/-/files/upload/proxied/-/upload?upload_token={token}"
    done = await send_through_datasette(ds, cookies, prepared, content, filename="p.txt", source="proxied")
    assert done.status_code == 201
    file = done.json()["file"]
    assert file["size"] == len(content)
    (key,) = bucket.keys(bucket.prefix)
    assert bucket.get(key) == content
    redirect = await ds.client.get(file["download_url"])
    assert httpx.get(redirect.headers["location"]).content == content


async def test_small_image_gets_a_real_thumbnail(ds, bucket):
    image = png_bytes()
    file = (await upload(ds, actor_cookies(ds), image, filename="red.png", content_type="image/png"))["file"]
    response = await ds.client.get(file["thumbnail_url"])
    assert response.status_code == 200
    assert response.headers["content-type"] in ("image/jpeg", "image/png")
    thumb = Image.open(io.BytesIO(response.content))
    assert thumb.size == (64, 48)


async def test_image_over_thumbnail_cap_gets_icon_without_reading_object(make_datasette, bucket, s3_proxy):
    """The proxy's log of what Datasette asks S3 shows no GET of the object, only
    the HEAD of confirm. (A real bucket is reached directly, without the log.)"""
    proxied = {"endpoint_url": s3_proxy.url} if s3_proxy else {}
    ds = await make_datasette(
        {"s3files": {"storage": "s3", "config": bucket.source_config(thumbnail_max_size=100, **proxied)}}
    )
    image = png_bytes((300, 300))
    assert len(image) > 100
    response = await thumbnail_after_upload(ds, image, "big.png")
    await assert_icon_and_none_cached(ds, response)
    if s3_proxy:
        object_requests = s3_proxy.methods_for("big.png")
        assert "HEAD" in object_requests
        assert "GET" not in object_requests, object_requests


async def test_non_image_gets_icon(ds, bucket):
    file = (await upload(ds, actor_cookies(ds), b"a,b\n1,2\n", filename="t.csv", content_type="text/csv"))[
        "file"
    ]
    response = await ds.client.get(file["thumbnail_url"])
    assert response.headers["content-type"] == "image/svg+xml"
    assert b"CSV" in response.content


async def test_thumbnail_requires_browse_permission(make_datasette, bucket):
    ds = await make_datasette(
        {"s3files": {"storage": "s3", "config": bucket.source_config()}},
        permissions={"files-browse": {"id": "alice"}},
    )
    file = (await upload(ds, actor_cookies(ds), png_bytes(), filename="r.png", content_type="image/png"))[
        "file"
    ]
    assert (await ds.client.get(file["thumbnail_url"], cookies=actor_cookies(ds, "bob"))).status_code == 403
    assert (await ds.client.get(file["thumbnail_url"], cookies=actor_cookies(ds, "alice"))).status_code == 200
