"""Small files' prepares and completes go to Datasette in batches (static/batch-requests.js),
in real Chromium against `datasette serve` and this run's S3 server."""

from __future__ import annotations

import hashlib
import os
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import expect

from e2e.page_helpers import PAGE, choose

DIRECT = "/-/files/upload/s3files/-/"
UPLOADER = "/-/files-s3/upload/s3files/-/"


def test_twenty_small_files_take_fewer_than_twenty_prepares_and_all_land_hashed(page, site, tmp_path):
    contents = {f"small-{n:02}.txt": os.urandom(4096) for n in range(20)}
    paths = []
    for name, content in contents.items():
        (tmp_path / name).write_bytes(content)
        paths.append(str(tmp_path / name))
    to_datasette = []
    page.on("request", lambda request: to_datasette.append(urlparse(request.url).path))
    page.goto(PAGE)
    choose(page, *paths)
    expect(page.locator(".dfs3-file[data-status=done]")).to_have_count(20, timeout=60_000)

    prepares = [p for p in to_datasette if p in (DIRECT + "prepare", UPLOADER + "prepare-batch")]
    completes = [p for p in to_datasette if p in (DIRECT + "complete", UPLOADER + "complete-batch")]
    assert UPLOADER + "prepare-batch" in prepares and UPLOADER + "complete-batch" in completes
    assert len(prepares) < 20 and len(completes) < 20, (prepares, completes)

    # Every file registered once, with the SHA-256 of its own bytes.
    recorded = {}
    for row in page.locator(".dfs3-file").all():
        info = httpx.get(f"{site.url}/-/files/{row.get_attribute('data-file-id')}.json").json()
        recorded[info["filename"]] = info["content_hash"]
    assert recorded == {name: "sha256:" + hashlib.sha256(c).hexdigest() for name, c in contents.items()}


@pytest.mark.parametrize("site", [{"config": {"allowed_content_types": ["text/plain"]}}], indirect=True)
def test_a_file_refused_in_a_batch_fails_alone(page, site, tmp_path):
    names = [f"f{n:02}.{'html' if n % 2 else 'txt'}" for n in range(12)]
    for name in names:
        (tmp_path / name).write_bytes(os.urandom(2048))
    batches = []
    page.on("response", lambda r: r.url.endswith("/-/prepare-batch") and batches.append(r))
    page.goto(PAGE)
    choose(page, *(str(tmp_path / name) for name in names))
    rows = page.locator(".dfs3-file")
    expect(page.locator(".dfs3-file[data-status=done]")).to_have_count(6, timeout=60_000)
    expect(page.locator(".dfs3-file[data-status=error]")).to_have_count(6, timeout=60_000)
    for n, name in enumerate(names):
        if name.endswith(".html"):
            expect(rows.nth(n)).to_contain_text("Content type text/html is not allowed here")
    # Some of the refusals came in a batch answer, beside files it accepted.
    answers = [file for response in batches for file in response.json()["files"]]
    assert {a["ok"] for a in answers} == {True, False}, answers
