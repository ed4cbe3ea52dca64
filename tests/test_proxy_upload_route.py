"""datasette-files' byte route, /-/files/upload/{source}/-/upload, on s3 sources.

Its own view reads the whole body before it checks anything. Ours answers a
direct-upload source at once, and on a proxy source checks the permission and
the token before a byte is read, then reads no more than the token allows.
Each request's body here is a generator that counts what the server pulled.
"""

import pytest

from tests.helpers import actor_cookies, complete

MIB = 1024**2


class CountedBody:
    """A request body of `size` bytes, sent in 64 KiB chunks as the server reads them."""

    def __init__(self, size: int):
        self.size = size
        self.pulled = 0

    async def __aiter__(self):
        chunk = b"x" * 65536
        while self.pulled < self.size:
            piece = chunk[: self.size - self.pulled]
            self.pulled += len(piece)
            yield piece


def form_body(token: str, content: bytes, boundary: str = "b0undary") -> bytes:
    """A multipart form with the upload_token field and then the file, as browsers send it."""
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="upload_token"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )


FORM_HEADERS = {"content-type": "multipart/form-data; boundary=b0undary"}


@pytest.fixture
async def sources(make_datasette, bucket):
    return await make_datasette(
        {
            "direct": {"storage": "s3", "config": bucket.source_config()},
            "proxied": {"storage": "s3", "config": bucket.source_config(direct_uploads=False)},
        }
    )


async def prepare_proxied(ds, size: int, actor: str = "alice") -> dict:
    response = await ds.client.post(
        "/-/files/upload/proxied/-/prepare",
        json={"filename": "f.bin", "content_type": "application/octet-stream", "size": size},
        cookies=actor_cookies(ds, actor),
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("actor", ["alice", None])
async def test_direct_upload_source_answers_before_reading_the_body(sources, bucket, actor):
    body = CountedBody(256 * MIB)
    cookies = actor_cookies(sources, actor) if actor else {}
    response = await sources.client.post(
        "/-/files/upload/direct/-/upload", content=body, headers=FORM_HEADERS, cookies=cookies
    )
    assert response.status_code == 400
    assert response.json()["ok"] is False
    assert "straight to the bucket" in response.json()["errors"][0]
    assert body.pulled <= 64 * 1024
    assert "upload_token" not in response.text
    assert not bucket.keys(bucket.prefix)


async def test_proxy_source_refuses_an_actor_without_permission_before_reading(sources, bucket):
    prepared = await prepare_proxied(sources, 10)
    body = CountedBody(256 * MIB)
    response = await sources.client.post(prepared["upload_url"], content=body, headers=FORM_HEADERS)
    assert response.status_code == 403
    assert body.pulled <= 64 * 1024


async def test_proxy_source_refuses_a_missing_or_unknown_token_before_reading(sources, bucket):
    for url in ["/-/files/upload/proxied/-/upload", "/-/files/upload/proxied/-/upload?upload_token=tok_x"]:
        body = CountedBody(256 * MIB)
        response = await sources.client.post(
            url, content=body, headers=FORM_HEADERS, cookies=actor_cookies(sources)
        )
        assert response.status_code == 400, response.text
        assert body.pulled <= 64 * 1024


async def test_proxy_source_refuses_another_actors_token(sources, bucket):
    prepared = await prepare_proxied(sources, 10, actor="alice")
    body = CountedBody(MIB)
    response = await sources.client.post(
        prepared["upload_url"], content=body, headers=FORM_HEADERS, cookies=actor_cookies(sources, "bob")
    )
    assert response.status_code == 403
    assert body.pulled <= 64 * 1024


async def test_proxy_source_reads_no_more_than_the_token_allows(sources, bucket):
    prepared = await prepare_proxied(sources, 1000)
    oversized = form_body(prepared["upload_token"], b"y" * (4 * MIB))

    async def streamed():  # no Content-Length: the cap must hold as the bytes arrive
        for start in range(0, len(oversized), 65536):
            streamed.pulled += 65536
            yield oversized[start : start + 65536]

    streamed.pulled = 0
    response = await sources.client.post(
        prepared["upload_url"], content=streamed(), headers=FORM_HEADERS, cookies=actor_cookies(sources)
    )
    assert response.status_code == 413, response.text
    assert streamed.pulled <= 1000 + 64 * 1024 + 65536
    assert not bucket.keys(bucket.prefix)


async def test_proxy_source_refuses_a_declared_length_over_the_token_at_once(sources, bucket):
    prepared = await prepare_proxied(sources, 1000)
    response = await sources.client.post(
        prepared["upload_url"],
        content=form_body(prepared["upload_token"], b"z" * (MIB)),
        headers=FORM_HEADERS,
        cookies=actor_cookies(sources),
    )
    assert response.status_code == 413
    assert "at most" in response.json()["errors"][0]


async def test_proxy_upload_within_the_token_is_stored(sources, bucket):
    content = b"proxied bytes " * 70
    prepared = await prepare_proxied(sources, len(content))
    response = await sources.client.post(
        prepared["upload_url"],
        content=form_body(prepared["upload_token"], content),
        headers=FORM_HEADERS,
        cookies=actor_cookies(sources),
    )
    assert response.status_code == 200, response.text
    done = await complete(sources, actor_cookies(sources), prepared["upload_token"], source="proxied")
    assert done.status_code == 201, done.text
    (key,) = bucket.keys(bucket.prefix)
    assert bucket.get(key) == content


async def test_proxy_source_writes_only_for_the_token_it_checked(sources, bucket):
    # The query's token is checked before the body; the form's upload_token is
    # what datasette-files uses. Naming another actor's token there must not
    # put these bytes under that actor's upload.
    mine = await prepare_proxied(sources, 1000, actor="alice")
    theirs = await prepare_proxied(sources, 1000, actor="bob")
    response = await sources.client.post(
        mine["upload_url"],
        content=form_body(theirs["upload_token"], b"alice's bytes"),
        headers=FORM_HEADERS,
        cookies=actor_cookies(sources, "alice"),
    )
    assert response.status_code == 400, response.text
    assert response.json()["ok"] is False
    assert "not the one in the upload_url" in response.json()["errors"][0]
    assert not bucket.keys(bucket.prefix)


async def test_proxy_source_stores_no_more_than_the_declared_size(sources, bucket):
    # The form's 64 KiB of room is for boundaries and fields, not for file bytes.
    prepared = await prepare_proxied(sources, 1000)
    response = await sources.client.post(
        prepared["upload_url"],
        content=form_body(prepared["upload_token"], b"a" * 50_000),
        headers=FORM_HEADERS,
        cookies=actor_cookies(sources),
    )
    assert response.status_code == 413, response.text
    assert "at most 1000 bytes" in response.json()["errors"][0]
    assert not bucket.keys(bucket.prefix)
