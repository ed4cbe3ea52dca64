"""Malformed or hostile requests to prepare and complete: a 4xx JSON error that
says what to fix, never a 500, and nothing registered or signed."""

import pytest
from helpers import actor_cookies


async def assert_nothing_registered(ds):
    db = ds.get_internal_database()
    assert (await db.execute("select count(*) from datasette_files")).single_value() == 0


def assert_json_error(response, status, fragment):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False
    assert any(fragment in message for message in body["errors"]), body["errors"]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"content_type": "text/plain", "size": 3}, "filename is required"),
        ({"filename": "", "size": 3}, "filename is required"),
        ({"filename": "   ", "size": 3}, "filename is required"),
        ({"filename": 42, "size": 3}, "filename is required"),
        ({"filename": "a.txt"}, "size is required"),
        ({"filename": "a.txt", "size": -1}, "size must be greater than zero"),
        ({"filename": "a.txt", "size": 0}, "size must be greater than zero"),
        ({"filename": "a.txt", "size": 1.5}, "size is required"),
        ({"filename": "a.txt", "size": "3"}, "size is required"),
        ({"filename": "a.txt", "size": True}, "size is required"),
        ({"filename": "a.txt", "size": 6 * 1024**4}, "File is too large"),
        ({"filename": "../../etc/passwd", "size": 3}, "without '/'"),
        ({"filename": "a/b.txt", "size": 3}, "without '/'"),
        ({"filename": "a\\b.txt", "size": 3}, "without '/'"),
        ({"filename": "..", "size": 3}, "only dots"),
        ({"filename": "bad\x00name.txt", "size": 3}, "control"),
        ({"filename": "bad\nname.txt", "size": 3}, "control"),
        ({"filename": "evil\u202etxt.exe", "size": 3}, "control"),
        ({"filename": "x" * 1000, "size": 3}, "filename is too long"),
        ({"filename": "a.txt", "size": 3, "content_type": "not a type"}, "content_type must be a MIME type"),
        (
            {"filename": "a.txt", "size": 3, "content_type": ["text/plain"]},
            "content_type must be a MIME type",
        ),
    ],
)
async def test_prepare_rejects_bad_body(ds, body, fragment):
    response = await ds.client.post("/-/files/upload/s3files/-/prepare", json=body, cookies=actor_cookies(ds))
    assert_json_error(response, 400, fragment)
    await assert_nothing_registered(ds)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"a string"', b"\xff\xfe", b""])
async def test_prepare_rejects_invalid_json(ds, raw):
    response = await ds.client.post(
        "/-/files/upload/s3files/-/prepare",
        content=raw,
        headers={"content-type": "application/json"},
        cookies=actor_cookies(ds),
    )
    assert_json_error(response, 400, "JSON")


@pytest.mark.parametrize("endpoint", ["prepare", "complete"])
async def test_endpoints_refuse_non_json_content_type(ds, endpoint):
    """A cross-site HTML form can only send form encodings: refuse them."""
    response = await ds.client.post(
        f"/-/files/upload/s3files/-/{endpoint}",
        content=b"filename=a.txt&size=3",
        headers={"content-type": "application/x-www-form-urlencoded"},
        cookies=actor_cookies(ds),
    )
    assert_json_error(response, 400, "Content-Type: application/json")


async def test_oversized_json_body_is_refused(ds):
    response = await ds.client.post(
        "/-/files/upload/s3files/-/prepare",
        json={"filename": "a.txt", "size": 3, "padding": "x" * 100_000},
        cookies=actor_cookies(ds),
    )
    assert_json_error(response, 413, "too large")


async def test_unknown_source_is_a_json_404(ds):
    response = await ds.client.post(
        "/-/files/upload/nope/-/prepare", json={"filename": "a.txt", "size": 3}, cookies=actor_cookies(ds)
    )
    assert_json_error(response, 404, "Source not found")


@pytest.mark.parametrize("endpoint", ["prepare", "complete"])
async def test_without_upload_permission_is_403(ds, endpoint):
    response = await ds.client.post(
        f"/-/files/upload/s3files/-/{endpoint}", json={"filename": "a.txt", "size": 3, "upload_token": "x"}
    )
    assert_json_error(response, 403, "files-upload")


async def test_get_is_405(ds):
    response = await ds.client.get("/-/files/upload/s3files/-/prepare", cookies=actor_cookies(ds))
    assert_json_error(response, 405, "POST")


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({}, "upload_token is required"),
        ({"upload_token": ""}, "upload_token is required"),
        ({"upload_token": 12}, "upload_token is required"),
        ({"upload_token": "tok_01abc"}, "not valid"),
        ({"upload_token": "x" * 10000}, "far too long"),
        ({"upload_token": ["a"]}, "upload_token is required"),
    ],
)
async def test_complete_rejects_bad_tokens(ds, body, fragment):
    response = await ds.client.post(
        "/-/files/upload/s3files/-/complete", json=body, cookies=actor_cookies(ds)
    )
    assert_json_error(response, 400, fragment)
    await assert_nothing_registered(ds)
