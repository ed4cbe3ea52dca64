"""Image bombs and broken images: refused by their header, decoded off the
event loop, and a failure is remembered instead of retried on every request."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import struct
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from datasette_files_s3 import files_bridge
from datasette_files_s3.thumbnails import MAX_PIXELS, FailedThumbnails, ImageRefused, check_pixels
from tests.helpers import actor_cookies, assert_icon_and_none_cached, thumbnail_after_upload, upload
from tests.live_clients import complete, direct_upload, expect, prepare, signed_in
from tests.live_servers import DatasetteProcess, live_config

BOMB_SIDE = 13_000  # 169 megapixels: over a second to decode here, and 169 MB


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int, kept: float = 1.0) -> bytes:
    """A valid 8-bit grayscale PNG of width x height black pixels: about 1 KB per
    million pixels. `kept` < 1 cuts the pixel data short (0: the header alone)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + width)  # filter byte, then one byte per pixel
    data = b""
    if kept:
        data = b"".join(compressor.compress(row * 64) for _ in range(height // 64))
        data += compressor.compress(row * (height % 64)) + compressor.flush()
    data = data[: int(len(data) * kept)]
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return png_bomb(BOMB_SIDE, BOMB_SIDE)


@pytest.fixture(scope="module")
def truncated_bomb() -> bytes:
    """Decoding it takes most of the full bomb's time, then fails: nothing to cache but the failure."""
    return png_bomb(BOMB_SIDE, BOMB_SIDE, kept=0.99)


def broken_png() -> bytes:
    """A real 300x300 PNG cut in half: the header reads, the pixels do not."""
    buffer = io.BytesIO()
    Image.effect_noise((300, 300), 64).save(buffer, format="PNG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


# --- the header check ---------------------------------------------------------


@pytest.mark.parametrize("size", [(13_000, 13_000), (4_000, 3_001), (20_000, 20_000), (1, 12_000_001)])
def test_header_over_the_pixel_limit_is_refused(size):
    """20000x20000 is also over Pillow's own bomb limit, which raises instead of warning."""
    with pytest.raises(ImageRefused, match="pixel"):
        check_pixels(png_bomb(*size, kept=0))


@pytest.mark.parametrize("data", [png_bomb(4_000, 3_000, kept=0), b"not an image", b""])
def test_header_within_the_limit_or_unreadable_passes(data):
    assert MAX_PIXELS == 12_000_000
    check_pixels(data)


def test_failure_memory_is_bounded_and_forgets_the_oldest():
    failed = FailedThumbnails(size=3)
    for file_id in ("df-a", "df-b", "df-c", "df-a", "df-d"):
        failed.add(file_id)
    assert [f in failed for f in ("df-a", "df-b", "df-c", "df-d")] == [True, False, True, True]


# --- through Datasette and the S3 server ---------------------------------------------------


async def test_bomb_gets_the_icon_and_is_never_decoded(ds, bomb, caplog):
    """Refused by its header's pixel count: by thumbnails.py on datasette-files
    0.1a3, by datasette-files' own worker where it makes thumbnails itself."""
    with caplog.at_level("WARNING", logger="datasette_files_s3"):
        response = await thumbnail_after_upload(ds, bomb, "bomb.png")
    await assert_icon_and_none_cached(ds, response)
    if files_bridge.makes_thumbnails_safely():
        failures = await ds.get_internal_database().execute(
            "select reason from datasette_files_thumbnail_failures"
        )
        assert [row["reason"] for row in failures] == ["too_many_pixels"]
    else:
        assert f"{BOMB_SIDE}x{BOMB_SIDE} is {BOMB_SIDE**2} pixels, over the" in caplog.text


def through(s3_proxy, bucket, **overrides) -> dict:
    """A source config for the test bucket whose S3 requests go through the logging proxy."""
    if s3_proxy is None:
        pytest.skip("counts the requests Datasette sends to a local S3 server")
    return bucket.source_config(endpoint_url=s3_proxy.url, **overrides)


async def test_failed_thumbnail_is_not_tried_again(make_datasette, bucket, s3_proxy):
    """The proxy's log shows one GET of the object: complete's attempt, never the icon requests'."""
    ds = await make_datasette({"s3files": {"storage": "s3", "config": through(s3_proxy, bucket)}})
    file = (
        await upload(ds, actor_cookies(ds), broken_png(), filename="broken.png", content_type="image/png")
    )["file"]
    responses = [await ds.client.get(file["thumbnail_url"]) for _ in range(3)]
    assert [r.headers["content-type"] for r in responses] == ["image/svg+xml"] * 3
    gets = [method for method in s3_proxy.methods_for("broken.png") if method == "GET"]
    assert len(gets) == 1, gets


def green_png(width: int = 64, height: int = 48) -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(image, format="PNG")
    return image.getvalue()


async def proxied_upload(ds, s3_proxy, filename: str, content: bytes) -> tuple[dict, int]:
    """datasette-files' own flow for source `proxied`: prepare, upload through
    Datasette, complete. (The file's JSON, how many S3 requests for it came
    before complete.)"""
    cookies = actor_cookies(ds)
    plan = (
        await ds.client.post(
            "/-/files/upload/proxied/-/prepare",
            json={"filename": filename, "content_type": "image/png", "size": len(content)},
            cookies=cookies,
        )
    ).json()
    sent = await ds.client.post(
        plan["upload_url"],
        data=plan["upload_fields"],
        files={"file": (filename, content, "image/png")},
        cookies=cookies,
    )
    assert sent.status_code == 200, sent.text
    before = len(s3_proxy.methods_for(filename))
    done = await ds.client.post(
        "/-/files/upload/proxied/-/complete", json={"upload_token": plan["upload_token"]}, cookies=cookies
    )
    assert done.status_code == 201, done.text
    return done.json()["file"], before


async def test_proxy_mode_complete_reads_no_object_for_a_thumbnail(make_datasette, bucket, s3_proxy):
    """datasette-files 0.1a3's own complete would read the whole object and decode it
    on the event loop; the thumbnail is made on its first request instead, bounded and
    off the loop. (Later datasette-files make it themselves, bounded, in the background.)"""
    ds = await make_datasette(
        {"proxied": {"storage": "s3", "config": through(s3_proxy, bucket, direct_uploads=False)}}
    )
    file, before = await proxied_upload(ds, s3_proxy, "green.png", green_png())
    if not files_bridge.makes_thumbnails_safely():
        assert "GET" not in s3_proxy.methods_for("green.png")[before:]
    thumbnail = await ds.client.get(file["thumbnail_url"])
    assert thumbnail.headers["content-type"] in ("image/png", "image/jpeg")
    assert Image.open(io.BytesIO(thumbnail.content)).size == (64, 48)


async def thumbnail_settled(ds, file_id: str) -> str:
    """Wait until datasette-files has cached a thumbnail ("thumbnail") or a
    failure (its reason) for the file: its complete makes one in the background."""
    db = ds.get_internal_database()
    while True:
        if (await db.execute("select 1 from datasette_files_thumbnails where file_id = ?", [file_id])).rows:
            return "thumbnail"
        failed = await db.execute(
            "select reason from datasette_files_thumbnail_failures where file_id = ?", [file_id]
        )
        if failed.rows:
            return failed.first()["reason"]
        await asyncio.sleep(0.02)


@pytest.mark.skipif(
    not files_bridge.makes_thumbnails_safely(), reason="this datasette-files makes no thumbnail at complete"
)
async def test_proxy_mode_complete_reads_no_image_over_thumbnail_max_size(make_datasette, bucket, s3_proxy):
    """datasette-files (after 0.1a3) makes a thumbnail when its complete
    registers a file, with its own size limit (10 MB): for an s3 source, an
    image over the source's thumbnail_max_size is refused, as our thumbnail
    view refuses it. Its one ranged GET asks for no more than that, and its
    body is not read: the object's size in the answer's headers refuses it."""
    content = green_png(300, 300)
    limit = len(content) - 1
    config = through(s3_proxy, bucket, direct_uploads=False, thumbnail_max_size=limit)
    ds = await make_datasette({"proxied": {"storage": "s3", "config": config}})
    file, _ = await proxied_upload(ds, s3_proxy, "big-green.png", content)
    assert await asyncio.wait_for(thumbnail_settled(ds, file["id"]), 30) == "too_large"
    gets = [
        sent
        for (method, _), (path, sent) in zip(s3_proxy.requests, s3_proxy.ranges, strict=True)
        if method == "GET" and path.split("?", 1)[0].endswith("/big-green.png")
    ]
    assert gets == [f"bytes=0-{limit}"]
    thumbnail = await ds.client.get(file["thumbnail_url"])
    assert thumbnail.headers["content-type"] == "image/svg+xml"


# --- a live server stays responsive ---------------------------------------------------


@pytest.fixture(scope="module")
def bomb_site(s3_server, tmp_path_factory):
    bucket = f"bombs-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    config = live_config(s3_server.source_config(bucket))
    config["plugins"]["datasette-files"]["sources"]["s3proxy"] = {
        "storage": "s3",
        "config": s3_server.source_config(bucket, prefix="proxy", direct_uploads=False),
    }
    server = DatasetteProcess(config, internal=str(tmp_path_factory.mktemp("bombs") / "internal.db")).start()
    yield server
    server.stop()


def proxy_upload(client: httpx.Client, content: bytes, filename: str) -> dict:
    """datasette-files' own flow through Datasette: prepare, upload, complete."""
    plan = prepare(client, "s3proxy", filename, len(content), "image/png")
    sent = client.post(
        plan["upload_url"], data=plan["upload_fields"], files={"file": (filename, content, "image/png")}
    )
    expect(sent, "upload", 200)
    return expect(complete(client, "s3proxy", plan["upload_token"]), "complete", 201).json()["file"]


def decode_attempts_logged(server: DatasetteProcess, file_id: str) -> list[str]:
    """Lines where our thumbnail path tried to decode the file (and failed)."""
    return [
        line
        for line in server.log().splitlines()
        if file_id in line and ("not generated" in line or ("generator" in line and "failed" in line))
    ]


def refusals_recorded(server: DatasetteProcess, file_id: str) -> list[str]:
    """Why the file got no thumbnail without being decoded: our log's pixel-count
    refusals on 0.1a3, datasette-files' failures table where it makes thumbnails itself."""
    if files_bridge.makes_thumbnails_safely():
        with sqlite3.connect(server.internal) as db:
            rows = db.execute(
                "select reason from datasette_files_thumbnail_failures where file_id = ?", [file_id]
            ).fetchall()
        return [reason for (reason,) in rows]
    return [
        "too_many_pixels"
        for line in server.log().splitlines()
        if f"thumbnail for {file_id} refused:" in line and "pixel limit" in line
    ]


@pytest.mark.parametrize("route", ["direct", "proxy"])
def test_bomb_thumbnails_never_hold_up_other_requests(bomb_site, truncated_bomb, route):
    """Four requests for a bomb's thumbnail at once, while /-/versions.json is asked
    again and again: every one is answered, and the bomb is never decoded.

    The bomb is cut short, so decoding it would fail after most of a second
    and leave nothing cached: each request would decode it again, on the event
    loop (that held other requests for 2.5-2.9 s before the fix). Direct: complete
    already refused it by its header and remembered that. Proxy mode: nothing was
    tried yet, so the first request reads the header and refuses it. Either way
    nothing is decoded, which the server's own record shows; how long other
    requests wait is a benchmark's question, not this test's (it varies with the
    machine's load).
    """
    with signed_in(bomb_site.url, bomb_site.cookie_for("alice")) as alice, httpx.Client(timeout=60) as http:
        if route == "direct":
            file = direct_upload(alice, http, "s3files", truncated_bomb, "bomb.png", "image/png")
        else:
            file = proxy_upload(alice, truncated_bomb, "bomb.png")
        with httpx.Client(base_url=bomb_site.url, timeout=60) as other, ThreadPoolExecutor(4) as pool:
            thumbnails = [pool.submit(alice.get, file["thumbnail_url"]) for _ in range(4)]
            answered = []
            while not answered or not all(t.done() for t in thumbnails):
                answered.append(other.get("/-/versions.json").status_code)
            served = [t.result().headers["content-type"] for t in thumbnails]
    assert set(answered) == {200}
    assert served == ["image/svg+xml"] * 4
    assert decode_attempts_logged(bomb_site, file["id"]) == []
    refusals = refusals_recorded(bomb_site, file["id"])
    assert refusals and set(refusals) == {"too_many_pixels"}, refusals
