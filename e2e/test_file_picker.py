"""datasette-files' file picker (`<datasette-file-picker>`) on an s3 source sends a
new file as the bundled uploader does: straight to the bucket through presigned
requests, with its SHA-256, in parts over the multipart threshold. The picker
then puts the new file's id in the row, as it does for any source.

datasette-files 0.1a3 opens the picker from an empty cell of a `file` column
(its "+" button) and writes the row itself; later versions open it from the
field for `file` columns in Datasette's row-edit form, whose Save writes it.
Which one a run drives is decided by what the installed datasette-files offers.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import sqlite3
import uuid

import httpx
import pytest
from playwright.sync_api import expect

from datasette_files_s3 import files_bridge
from e2e.page_helpers import MIB, PartGate, make_file, wait_until
from e2e.test_multipart_upload import composite_hash, file_parts, sha256_file
from tests.fault_injection import FlakyS3Proxy
from tests.live_servers import DatasetteProcess, live_config

THRESHOLD = 5 * MIB
ROW = "/data/things/1"
# datasette-files' field for `file` columns in the row-edit form (after 0.1a3).
ROW_EDIT_FIELD = (
    importlib.resources.files("datasette_files") / "static" / "datasette-file-field.js"
).is_file()


@pytest.fixture
def site(request, browser_s3, tmp_path):
    """A table whose `attachment` column is of datasette-files' `file` type, one
    empty row, alice allowed to edit it, and an s3 source with 5 MiB parts.

    `indirect` param `{"refuse_posts": True}`: the source reaches the bucket
    through a proxy that answers POST Object with 501, as R2 and B2 do (no
    test store refuses it: tests/fault_injection.py makes that fault)."""
    if not files_bridge.offers_file_picker():
        pytest.skip("this datasette-files offers no file picker")
    database = tmp_path / "data.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT, attachment TEXT)")
        conn.execute("INSERT INTO things (id, name) VALUES (1, 'first')")
    proxy = None
    options = {"multipart_threshold": "5MiB"}
    if getattr(request, "param", {}).get("refuse_posts"):
        proxy = FlakyS3Proxy(browser_s3.port, refuse_form_posts=True).start()
        options["endpoint_url"] = proxy.url
    bucket = f"e2e-picker-{uuid.uuid4().hex[:12]}"
    config = live_config(browser_s3.source_config(bucket, **options))
    config["databases"] = {"data": {"tables": {"things": {"column_types": {"attachment": "file"}}}}}
    config["permissions"]["update-row"] = {"id": "*"}
    datasette = DatasetteProcess(config, databases=(str(database),))
    browser_s3.create_bucket(bucket, cors_origins=[datasette.url])
    datasette.start()
    datasette.bucket = bucket
    # Where the page sends the bytes.
    datasette.s3_url = proxy.url if proxy else browser_s3.endpoint_url
    yield datasette
    datasette.stop()
    if proxy:
        proxy.stop()


def start_upload_in_the_picker(page, path):
    """Open the picker for row 1's attachment and start uploading `path` with it; the picker."""
    page.goto("/data/things")
    if ROW_EDIT_FIELD:
        page.locator('button[data-row-action="edit"]').first.click()
        page.get_by_role("button", name="Choose file").click()
    else:
        page.locator(".datasette-file-attach").click()
    picker = page.locator("datasette-file-picker")
    picker.locator("summary").click()
    picker.locator(".file-input").set_input_files(path)
    picker.locator(".upload-btn").click()
    return picker


def upload_with_the_picker(page, path) -> None:
    """Upload `path` with the picker for row 1's attachment, and save the row."""
    picker = start_upload_in_the_picker(page, path)
    if ROW_EDIT_FIELD:
        # The picker closes with the new file in the field; Save writes the row.
        expect(picker).to_have_count(0, timeout=60_000)
        field = page.locator(".datasette-file-field-current datasette-file")
        expect(field).to_have_attribute("file-id", re.compile(r"^df-"))
        page.locator(".row-edit-save").click()
        expect(page.locator(".row-edit-dialog")).not_to_be_visible(timeout=30_000)
    else:
        # 0.1a3's cell editor writes the row, then reloads the page.
        expect(page.locator("td datasette-file")).to_have_count(1, timeout=60_000)


def row_attachment(site) -> str:
    rows = httpx.get(f"{site.url}{ROW}.json", params={"_shape": "objects"}).json()["rows"]
    return rows[0]["attachment"]


def recorded_after_storing(site, browser_s3, file_id: str, path) -> str | None:
    """Assert the bucket holds the file's bytes under its id; the content_hash Datasette recorded."""
    key = f"uploads/{file_id.removeprefix('df-')}/{os.path.basename(path)}"
    stored = browser_s3.client().get_object(Bucket=site.bucket, Key=key)["Body"].read()
    assert stored == open(path, "rb").read()
    return httpx.get(f"{site.url}/-/files/{file_id}.json").json()["content_hash"]


def sent(page) -> list[tuple[str, str]]:
    """(method, url) of every request the page makes, as they are made."""
    requests = []
    page.on("request", lambda request: requests.append((request.method, request.url)))
    return requests


def test_picker_upload_goes_to_the_bucket_with_its_sha256(page, site, browser_s3, tmp_path):
    path = make_file(tmp_path, "picked.bin", MIB + 17)
    requests = sent(page)
    upload_with_the_picker(page, path)

    file_id = row_attachment(site)
    assert file_id.startswith("df-")
    # The bytes went to the bucket in one presigned request; Datasette got metadata only.
    to_bucket = [method for method, url in requests if url.startswith(site.s3_url)]
    assert to_bucket in (["POST"], ["PUT"])
    datasette_posts = [line for line in site.requests_logged() if line.startswith("POST ")]
    assert "POST /-/files/upload/s3files/-/prepare" in datasette_posts
    assert "POST /-/files/upload/s3files/-/complete" in datasette_posts
    assert not any(line.endswith("/-/upload") or "/-/upload?" in line for line in datasette_posts)

    assert recorded_after_storing(site, browser_s3, file_id, path) == "sha256:" + sha256_file(path)


def test_picker_upload_over_the_threshold_goes_in_parts(page, site, browser_s3, tmp_path):
    path = make_file(tmp_path, "picked-big.bin", 2 * THRESHOLD + 333)
    requests = sent(page)
    upload_with_the_picker(page, path)

    file_id = row_attachment(site)
    assert file_id.startswith("df-")
    part_puts = [url for method, url in requests if method == "PUT" and "partNumber=" in url]
    assert sorted(re.search(r"partNumber=(\d+)", url).group(1) for url in part_puts) == ["1", "2", "3"]
    assert all(url.startswith(site.s3_url) for url in part_puts)
    datasette_posts = [line for line in site.requests_logged() if line.startswith("POST ")]
    assert "POST /-/files-s3/upload/s3files/-/multipart/complete" in datasette_posts

    expected = composite_hash(file_parts(path, THRESHOLD)) if browser_s3.reports_checksums else None
    assert recorded_after_storing(site, browser_s3, file_id, path) == expected


@pytest.mark.parametrize("site", [{"refuse_posts": True}], indirect=True)
def test_picker_upload_to_a_store_that_refuses_post_goes_as_a_put(page, site, browser_s3, tmp_path):
    path = make_file(tmp_path, "picked.txt", 4321)
    requests = sent(page)
    upload_with_the_picker(page, path)

    file_id = row_attachment(site)
    assert file_id.startswith("df-")
    # The refused POST, then the same key's presigned PUT.
    assert [method for method, url in requests if url.startswith(site.s3_url)] == ["POST", "PUT"]
    assert recorded_after_storing(site, browser_s3, file_id, path) == "sha256:" + sha256_file(path)


def test_closing_the_picker_mid_upload_aborts_the_upload(page, site, browser_s3, tmp_path):
    """Cancel in the picker stops its upload: the multipart upload is aborted in
    S3, no parts are left behind, and no file is registered or set in the row."""
    path = make_file(tmp_path, "dropped.bin", 2 * THRESHOLD + 333)
    gate = PartGate(page, let_through=1)  # part 1 goes; the others wait until the picker is closed
    picker = start_upload_in_the_picker(page, path)
    wait_until(page, lambda: gate.held)
    picker.locator(".close-btn").click()
    expect(picker).to_have_count(0)
    gate.open()
    abort = "POST /-/files-s3/upload/s3files/-/multipart/abort"
    wait_until(page, lambda: abort in site.requests_logged())
    assert browser_s3.client().list_multipart_uploads(Bucket=site.bucket).get("Uploads", []) == []
    assert "POST /-/files-s3/upload/s3files/-/multipart/complete" not in site.requests_logged()
    assert row_attachment(site) is None
