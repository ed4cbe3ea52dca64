"""datasette-files' own pages for an s3 source (its upload page and the source
page's drop zone) show the bundled uploader in place of the stock one, so every
browser upload sends its bytes straight to the bucket with their SHA-256."""

import hashlib
import os

import httpx
import pytest
from playwright.sync_api import expect

from e2e.page_helpers import choose
from tests.live_servers import DatasetteProcess, live_config


@pytest.mark.parametrize("stock_page", ["/-/files/upload/s3files", "/-/files/source/s3files"])
def test_stock_pages_upload_through_the_bundled_uploader_with_a_checked_hash(
    page, site, browser_s3, tmp_path, stock_page
):
    content = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "straight-to-s3.bin"
    path.write_bytes(content)

    requests = []
    page.on("request", lambda request: requests.append((request.method, request.url)))
    page.goto(stock_page)
    expect(page.locator("datasette-file-upload")).to_have_count(0)
    choose(page, str(path))
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=30_000)

    # The file's bytes went to the S3 endpoint's origin...
    uploads = [
        (method, url)
        for method, url in requests
        if method == "POST" and url.startswith(browser_s3.endpoint_url)
    ]
    assert len(uploads) == 1
    # ...and Datasette saw only the metadata calls.
    posts_to_datasette = [line for line in site.requests_logged() if line.startswith("POST ")]
    assert posts_to_datasette == [
        "POST /-/files/upload/s3files/-/prepare",
        "POST /-/files/upload/s3files/-/complete",
    ]
    (key,) = [item["Key"] for item in browser_s3.client().list_objects_v2(Bucket=site.bucket)["Contents"]]
    assert key.startswith("uploads/") and key.endswith("/straight-to-s3.bin")
    assert browser_s3.client().get_object(Bucket=site.bucket, Key=key)["Body"].read() == content

    file_id = row.get_attribute("data-file-id")
    info = httpx.get(f"{site.url}/-/files/{file_id}.json").json()
    assert info["content_hash"] == "sha256:" + hashlib.sha256(content).hexdigest()
    listing = httpx.get(f"{site.url}/-/files/source/s3files")
    assert "straight-to-s3.bin" in listing.text


def test_stock_upload_page_names_a_missing_bucket(chromium, browser_s3, tmp_path):
    """Before, prepare answered 200 and the page said only "Network error"."""
    datasette = DatasetteProcess(live_config(browser_s3.source_config("no-such-bucket-xyz"))).start()
    context = chromium.new_context(base_url=datasette.url)
    try:
        context.add_cookies([{"name": "ds_actor", "value": datasette.cookie_for(), "url": datasette.url}])
        page = context.new_page()
        path = tmp_path / "nowhere.txt"
        path.write_bytes(b"abc")
        page.goto("/-/files/upload/s3files")
        choose(page, str(path))
        row = page.locator(".dfs3-file")
        expect(row).to_have_attribute("data-status", "error", timeout=30_000)
        expect(row).to_contain_text("bucket 'no-such-bucket-xyz' does not exist")
        expect(row).to_contain_text("check the source's bucket setting, or create the bucket")
    finally:
        context.close()
        datasette.stop()
