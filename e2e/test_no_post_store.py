"""The bundled uploader on a store that refuses POST Object, as Cloudflare R2 and
Backblaze B2 do (501 NotImplemented), with the default `upload_method: auto`.

No test store refuses POST Object, so this is a fault we cannot produce
otherwise: a proxy in front of this run's S3 server (tests/fault_injection.py)
answers 501 to every form POST and passes everything else through, CORS
preflights included.
"""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
from playwright.sync_api import expect

from e2e.page_helpers import MIB, PAGE, choose, make_file
from tests.fault_injection import FlakyS3Proxy
from tests.live_servers import DatasetteProcess, live_config


@pytest.fixture
def site(browser_s3):
    """A Datasette whose source reaches the bucket only through the no-POST proxy."""
    proxy = FlakyS3Proxy(browser_s3.port, refuse_form_posts=True).start()
    bucket = f"e2e-put-{uuid.uuid4().hex[:12]}"
    config = browser_s3.source_config(bucket, endpoint_url=proxy.url, multipart_threshold="5MiB")
    datasette = DatasetteProcess(live_config(config))
    browser_s3.create_bucket(bucket, cors_origins=[datasette.url])
    datasette.start()
    datasette.bucket, datasette.proxy = bucket, proxy
    yield datasette
    datasette.stop()
    proxy.stop()


def form_posts(site) -> int:
    """POST Objects sent, by the page or Datasette (each refused with 501); multipart's POSTs carry a query."""
    return sum(1 for method, path in site.proxy.requests if method == "POST" and path == f"/{site.bucket}")


def file_json(site, file_id: str) -> dict:
    return httpx.get(f"{site.url}/-/files/{file_id}.json").json()


def sha256_of(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def uploaded(page, site, browser_s3, paths) -> dict[str, dict]:
    """Upload `paths` in the bundled uploader; every row must end done. {filename: file JSON}."""
    page.goto(PAGE)
    before = page.locator(".dfs3-file").count()
    choose(page, *paths)
    rows = page.locator(".dfs3-file")
    expect(rows).to_have_count(before + len(paths), timeout=30_000)
    for n in range(before, before + len(paths)):
        expect(rows.nth(n)).to_have_attribute("data-status", "done", timeout=120_000)
    files = [
        file_json(site, rows.nth(n).get_attribute("data-file-id")) for n in range(before, before + len(paths))
    ]
    return {f["filename"]: f for f in files}


def stored(browser_s3, site, path: str) -> bytes:
    return browser_s3.client().get_object(Bucket=site.bucket, Key=f"uploads/{path}")["Body"].read()


def test_uploads_switch_to_put_when_the_store_refuses_post(page, site, browser_s3, tmp_path):
    empty = make_file(tmp_path, "empty.txt", 0)
    small = make_file(tmp_path, "small.bin", 12345)
    big = make_file(tmp_path, "big.bin", 6 * MIB + 7)  # over multipart_threshold: two parts
    files = uploaded(page, site, browser_s3, [empty, small, big])
    for path in (empty, small, big):
        file = files[path.rsplit("/", 1)[-1]]
        with open(path, "rb") as f:
            assert stored(browser_s3, site, file["path"]) == f.read()
    assert files["empty.txt"]["content_hash"] == "sha256:" + sha256_of(empty)
    assert files["small.bin"]["content_hash"] == "sha256:" + sha256_of(small)
    if browser_s3.reports_checksums:
        assert files["big.bin"]["content_hash"].startswith("sha256-composite:")
    else:  # Ceph: no store checked the parts, so nothing is recorded (docs/testing.md)
        assert files["big.bin"]["content_hash"] is None
    refused = form_posts(site)
    assert refused >= 1  # the page's first POST, and Datasette's own, checking the 501 before it switches

    # The source remembered: the next file goes by PUT without trying POST.
    later = make_file(tmp_path, "later.bin", 999)
    files = uploaded(page, site, browser_s3, [later])
    assert files["later.bin"]["content_hash"] == "sha256:" + sha256_of(later)
    assert form_posts(site) == refused
