"""A folder's file keeps its path in the folder (`relative_path` at prepare) in
its metadata; a path that is absolute, climbs out with `..`, is too long or
names another file is refused with a 400 saying what to fix, and nothing is
signed or registered (issue 22 item 7)."""

import json

import pytest

from datasette_files_s3.files_bridge import FILES_TABLE
from datasette_files_s3.relative_paths import MAX_RELATIVE_PATH_CHARS
from tests.helpers import actor_cookies, complete, post_to_bucket, prepare

CONTENT = b"one file of a folder\n"


async def metadata_of(ds, file_id):
    row = (
        await ds.get_internal_database().execute(
            f"SELECT metadata FROM {FILES_TABLE} WHERE id = ?", [file_id]
        )
    ).first()
    return json.loads(row[0])


async def upload_with_path(ds, relative_path, filename="a.txt"):
    cookies = actor_cookies(ds)
    prepared = await prepare(ds, cookies, filename=filename, size=len(CONTENT), relative_path=relative_path)
    assert prepared.status_code == 200, prepared.text
    post_to_bucket(prepared.json(), CONTENT, filename)
    completed = await complete(ds, cookies, prepared.json()["upload_token"])
    assert completed.status_code == 201, completed.text
    return completed.json()["file"]


async def test_a_folders_file_keeps_its_path_in_its_metadata(ds, bucket):
    file = await upload_with_path(ds, "photos/2024/a.txt")
    assert file["filename"] == "a.txt"
    metadata = await metadata_of(ds, file["id"])
    assert metadata["relative_path"] == "photos/2024/a.txt"
    assert metadata["s3"]["key"].endswith("/a.txt")  # the key is the file's, not the path's


async def test_the_longest_path_fits_in_the_token(ds, bucket):
    """Every character JSON-escaped in the signed token: still confirmable."""
    folders = ("é" * 99 + "/") * 5 + "é" * 6
    assert len(f"{folders}/a.txt") == MAX_RELATIVE_PATH_CHARS
    file = await upload_with_path(ds, f"{folders}/a.txt")
    assert (await metadata_of(ds, file["id"]))["relative_path"] == f"{folders}/a.txt"


async def test_a_file_on_its_own_has_no_path(ds, bucket):
    file = await upload_with_path(ds, None)
    assert "relative_path" not in await metadata_of(ds, file["id"])


@pytest.mark.parametrize(
    "relative_path, says",
    [
        ("../a.txt", "without '..'"),
        ("photos/../../a.txt", "without '..'"),
        ("/etc/a.txt", "not absolute"),
        ("C:/photos/a.txt", "not absolute"),
        ("\\\\server\\share\\a.txt", "not absolute"),
        ("photos\\..\\a.txt", "each of its parts"),
        ("photos//a.txt", "empty parts"),
        ("photos/./a.txt", "'.'"),
        ("photos/b.txt", "end with the file's name"),
        ("p/" * MAX_RELATIVE_PATH_CHARS + "a.txt", "too long"),
        ("photos\x00/a.txt", "each of its parts"),
        (["photos", "a.txt"], "must be text"),
    ],
)
async def test_a_bad_path_is_refused_before_anything_is_signed(ds, bucket, relative_path, says):
    response = await prepare(ds, actor_cookies(ds), filename="a.txt", size=3, relative_path=relative_path)
    assert response.status_code == 400
    body = response.json()
    assert body["ok"] is False and "upload_token" not in body
    assert "relative_path" in body["errors"][0] and says in body["errors"][0]


async def test_multipart_create_refuses_a_bad_path_too(ds, bucket):
    response = await ds.client.post(
        "/-/files-s3/upload/s3files/-/multipart/create",
        json={
            "filename": "a.bin",
            "content_type": "application/octet-stream",
            "size": 10,
            "relative_path": "../a.bin",
        },
        cookies=actor_cookies(ds),
    )
    assert response.status_code == 400 and "without '..'" in response.json()["errors"][0]
