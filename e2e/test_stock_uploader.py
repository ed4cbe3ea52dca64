"""datasette-files' own upload page, unchanged, uploads straight to the bucket."""

import os

import httpx
from live_servers import DatasetteProcess, live_config
from playwright.sync_api import expect


def test_stock_upload_page_sends_bytes_to_bucket_not_datasette(page, live, moto, tmp_path):
    content = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "straight-to-s3.bin"
    path.write_bytes(content)

    requests = []
    page.on("request", lambda request: requests.append((request.method, request.url)))
    page.goto("/-/files/upload/s3files")
    page.set_input_files("datasette-file-upload input[type=file]", str(path))
    page.click("datasette-file-upload .dsf-upload-btn")
    page.wait_for_selector("datasette-file-upload .dsf-file-status.done", timeout=30_000)

    # The file's bytes went to the S3 endpoint's origin...
    uploads = [
        (method, url) for method, url in requests if method == "POST" and url.startswith(moto.endpoint_url)
    ]
    assert len(uploads) == 1
    # ...and Datasette saw only the metadata calls.
    posts_to_datasette = [line for line in live.requests_logged() if line.startswith("POST ")]
    assert posts_to_datasette == [
        "POST /-/files/upload/s3files/-/prepare",
        "POST /-/files/upload/s3files/-/complete",
    ]

    (key,) = [item["Key"] for item in moto.client().list_objects_v2(Bucket=live.bucket)["Contents"]]
    assert key.startswith("uploads/") and key.endswith("/straight-to-s3.bin")
    stored = moto.client().get_object(Bucket=live.bucket, Key=key)
    assert stored["Body"].read() == content

    listing = httpx.get(f"{live.url}/-/files/source/s3files")
    assert "straight-to-s3.bin" in listing.text


def test_stock_upload_page_names_a_missing_bucket(chromium, moto, tmp_path):
    """Before, prepare answered 200 and the page said only "Network error"."""
    datasette = DatasetteProcess(live_config(moto.source_config("no-such-bucket-xyz"))).start()
    context = chromium.new_context(base_url=datasette.url)
    try:
        context.add_cookies([{"name": "ds_actor", "value": datasette.cookie_for(), "url": datasette.url}])
        page = context.new_page()
        path = tmp_path / "nowhere.txt"
        path.write_bytes(b"abc")
        page.goto("/-/files/upload/s3files")
        page.set_input_files("datasette-file-upload input[type=file]", str(path))
        page.click("datasette-file-upload .dsf-upload-btn")
        status = page.locator("datasette-file-upload .dsf-file-status.error")
        expect(status).to_contain_text("bucket 'no-such-bucket-xyz' does not exist", timeout=30_000)
        expect(status).to_contain_text("check the source's bucket setting, or create the bucket")
    finally:
        context.close()
        datasette.stop()
