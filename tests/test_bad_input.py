"""Malformed or hostile requests to prepare and complete: a 4xx JSON error that
says what to fix, never a 500, and nothing registered or signed."""

import pytest

from datasette_files_s3.errors import UploadRejected
from datasette_files_s3.keys import check_filename
from tests.helpers import actor_cookies, upload


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
        ({"filename": "a.txt", "size": -1}, "size cannot be negative"),
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


# --- JSON that json.loads accepts but Python cannot use -------------------------------

# Under the 64 KiB body cap, yet far deeper than Python's recursion limit.
DEEPLY_NESTED = b'{"filename": "a.txt", "size": 3, "part_numbers": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
# Valid JSON escapes, but a lone surrogate is no character: it cannot be UTF-8 encoded.
LONE_SURROGATE = b'{"filename": "\\ud800.txt", "content_type": "text/plain", "size": 3, "upload_token": "x"}'
HOSTILE_JSON = {"deeply nested": (DEEPLY_NESTED, "nested"), "lone surrogate": (LONE_SURROGATE, "surrogate")}
JSON_ENDPOINTS = [
    "/-/files/upload/s3files/-/prepare",
    "/-/files/upload/s3files/-/complete",
    "/-/files/upload/proxied/-/prepare",
    "/-/files/upload/proxied/-/complete",
    "/-/files-s3/upload/s3files/-/multipart/create",
    "/-/files-s3/upload/s3files/-/multipart/sign",
    "/-/files-s3/upload/s3files/-/multipart/parts",
    "/-/files-s3/upload/s3files/-/multipart/complete",
    "/-/files-s3/upload/s3files/-/multipart/abort",
    "/-/files-s3/upload/s3files/-/bucket",
]


@pytest.fixture
async def two_modes(make_datasette, bucket):
    """A direct-upload source and a proxy-mode (direct_uploads: false) one."""
    return await make_datasette(
        {
            "s3files": {"storage": "s3", "config": bucket.source_config()},
            "proxied": {"storage": "s3", "config": bucket.source_config(direct_uploads=False)},
        }
    )


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize("kind", HOSTILE_JSON)
async def test_hostile_json_is_a_400_everywhere(two_modes, path, kind):
    body, fragment = HOSTILE_JSON[kind]
    response = await two_modes.client.post(
        path, content=body, headers={"content-type": "application/json"}, cookies=actor_cookies(two_modes)
    )
    assert_json_error(response, 400, fragment)
    await assert_nothing_registered(two_modes)


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b'{"update": {"search_text": ' + b"[" * 30_000 + b"]" * 30_000 + b"}}", "nested"),
        (b'{"update": {"search_text": "\\udfff"}}', "surrogate"),
    ],
)
async def test_hostile_json_to_file_update_is_a_400(two_modes, body, fragment):
    """datasette-files' own update endpoint, for an s3 file."""
    cookies = actor_cookies(two_modes)
    file = (await upload(two_modes, cookies, b"abc"))["file"]
    response = await two_modes.client.post(
        f"/-/files/{file['id']}/-/update",
        content=body,
        headers={"content-type": "application/json"},
        cookies=cookies,
    )
    assert_json_error(response, 400, fragment)


async def test_file_update_still_works(two_modes):
    cookies = actor_cookies(two_modes)
    file = (await upload(two_modes, cookies, b"abc"))["file"]
    response = await two_modes.client.post(
        f"/-/files/{file['id']}/-/update", json={"update": {"search_text": "findme"}}, cookies=cookies
    )
    assert response.status_code == 200, response.text
    assert response.json()["file"]["search_text"] == "findme"


def test_filename_with_a_lone_surrogate_is_refused():
    with pytest.raises(UploadRejected, match="surrogate"):
        check_filename("\ud800.txt")


CROSS_SITE_POSTS = [
    *(path for path in JSON_ENDPOINTS if "/proxied/" not in path),
    "/-/files/df-01jdaaaaaaaaaaaaaaaaaaaaaa/-/delete",
]
# What a browser sends with a form another site submits: Sec-Fetch-Site, or
# (older browsers) only an Origin that is not ours.
CROSS_SITE_HEADERS = {
    "sec-fetch-site": {"sec-fetch-site": "cross-site", "origin": "https://evil.example"},
    "origin-only": {"origin": "https://evil.example"},
}


@pytest.mark.parametrize("browser", CROSS_SITE_HEADERS)
@pytest.mark.parametrize("path", CROSS_SITE_POSTS)
async def test_cross_site_form_post_is_refused(ds, path, browser):
    """Datasette core's cross-origin protection (Sec-Fetch-Site / Origin) refuses
    the request before our view runs, whatever the body: 403, nothing signed."""
    response = await ds.client.post(
        path,
        content=b'{"filename": "a.txt", "size": 3, "x": "="}',
        headers={"content-type": "text/plain", **CROSS_SITE_HEADERS[browser]},
        cookies=actor_cookies(ds),
    )
    assert response.status_code == 403, response.text
    pending = await ds.get_internal_database().execute("select count(*) from datasette_files_s3_pending")
    assert pending.single_value() == 0


async def test_same_origin_post_from_the_browser_is_allowed(ds):
    """The control for the test above: the same browser headers from our own origin pass."""
    response = await ds.client.post(
        "/-/files/upload/s3files/-/prepare",
        json={"filename": "a.txt", "size": 3},
        headers={"sec-fetch-site": "same-origin", "origin": "http://localhost"},
        cookies=actor_cookies(ds),
    )
    assert response.status_code == 200, response.text
