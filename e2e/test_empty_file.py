"""An empty file uploads through both pages and is registered with size 0."""

import hashlib

import httpx
import pytest
from playwright.sync_api import expect


def registered_size(site, file_id: str) -> int:
    return httpx.get(f"{site.url}/-/files/{file_id}.json").json()["size"]


def stored_objects(browser_s3, site) -> list[int]:
    return [o["Size"] for o in browser_s3.client().list_objects_v2(Bucket=site.bucket).get("Contents", [])]


@pytest.fixture
def empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    return str(path)


def test_bundled_uploader_uploads_an_empty_file(page, site, browser_s3, empty_file):
    page.goto("/-/files-s3/upload/s3files")
    page.set_input_files("datasette-files-s3-upload input[type=file]", empty_file)
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=30_000)
    assert registered_size(site, row.get_attribute("data-file-id")) == 0
    assert stored_objects(browser_s3, site) == [0]


def test_stock_upload_page_uploads_an_empty_file(page, site, browser_s3, empty_file):
    # datasette-files' own page, where the bundled uploader takes the stock one's place.
    page.goto("/-/files/upload/s3files")
    with page.expect_response(lambda r: r.url.endswith("/-/complete")) as completed:
        page.set_input_files("datasette-files-s3-upload input[type=file]", empty_file)
    assert completed.value.status == 201, completed.value.text()
    file = completed.value.json()["file"]
    assert registered_size(site, file["id"]) == 0
    assert file["content_hash"] == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert stored_objects(browser_s3, site) == [0]
