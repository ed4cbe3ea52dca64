"""datasette-files' own upload page, unchanged, uploads straight to the bucket."""

import os

import httpx


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
