"""After a reload the uploader lists the uploads it can continue, and a file dropped
anywhere on the page continues its upload; while files upload the screen is kept on
(issue 22.3); files pasted on the page are uploaded (22.7). Real Chromium against
`datasette serve` and this run's S3 server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from e2e.accessibility import axe_violations
from e2e.page_helpers import MIB, PAGE, PartGate, RequestGate, choose, make_file, wait_until
from e2e.test_multipart_upload import PartLog, assert_object_is

# Parts of 5 MiB, as in test_multipart_upload.py.
pytestmark = pytest.mark.parametrize("site", [{"config": {"multipart_threshold": "5MiB"}}], indirect=True)


@pytest.fixture(scope="module")
def medium_file(tmp_path_factory):
    """40 MiB and a bit: 9 parts of 5 MiB."""
    return make_file(tmp_path_factory.mktemp("medium"), "medium.bin", 40 * MIB + 777)


def drop_on_page(page, path):
    """Drop the file at `path` on the page's heading, outside the uploader's box.

    The file goes through a file input of the test's own (Playwright sets its
    files as a user choosing them would), then into a real DataTransfer.
    """
    page.evaluate("""() => {
        const input = Object.assign(document.createElement("input"), {type: "file", id: "test-drop-source"});
        input.hidden = true;
        document.body.append(input);
    }""")
    page.set_input_files("#test-drop-source", path)
    page.evaluate("""() => {
        const transfer = new DataTransfer();
        for (const file of document.getElementById("test-drop-source").files) transfer.items.add(file);
        const target = document.querySelector("h1") || document.body;
        for (const type of ["dragenter", "dragover", "drop"]) {
            target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }
    }""")


def test_reload_lists_unfinished_uploads_and_a_drop_anywhere_continues_them(
    page, site, browser_s3, medium_file
):
    log = PartLog(page)
    page.goto(PAGE)
    gate = PartGate(page, let_through=2)
    choose(page, medium_file)
    wait_until(page, lambda: len(log.finished) >= 2)
    # An upload remembered past its expiry cannot be continued: it is forgotten, not listed.
    expired_key = "datasette-files-s3:s3files:old.bin:5:1"
    page.evaluate(
        "key => localStorage.setItem(key, JSON.stringify({token: 'x', expiresAt: Date.now() - 1000}))",
        expired_key,
    )
    page.reload()
    gate.open()
    sent = set(log.finished)
    unfinished = page.locator(".dfs3-unfinished")
    expect(unfinished).to_be_visible()
    # Name, size, and what the bucket holds: two 5 MiB parts.
    expect(unfinished.locator("li")).to_have_count(1)
    expect(unfinished.locator("li")).to_contain_text("medium.bin · 42 MB · 10 MB already in the bucket")
    expect(page.get_by_role("button", name="Discard the unfinished upload of medium.bin")).to_be_visible()
    # The list as a screen-reader user meets it (e2e/accessibility.py).
    assert axe_violations(page) == []
    assert page.evaluate("key => localStorage.getItem(key)", expired_key) is None
    log.finished.clear()
    with page.expect_response(lambda r: r.url.endswith("/multipart/create")) as created:
        drop_on_page(page, medium_file)
    answer = created.value.json()
    assert answer["resumed"] is True
    assert {p["part_number"] for p in answer["parts"]} == sent
    expect(unfinished).to_be_hidden()
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=60_000)
    log.catch_up(page, set(range(1, 10)) - sent)
    assert set(log.finished) == set(range(1, 10)) - sent
    assert_object_is(browser_s3, site, row, medium_file, 9)
    # Done: nothing is left to list.
    page.reload()
    page.wait_for_load_state("networkidle")
    expect(unfinished).to_be_hidden()


def test_discarding_an_unfinished_upload_aborts_it_in_the_bucket(page, site, browser_s3, medium_file):
    log = PartLog(page)
    page.goto(PAGE)
    gate = PartGate(page, let_through=1)
    choose(page, medium_file)
    wait_until(page, lambda: log.finished)
    page.reload()
    gate.open()
    client = browser_s3.client()
    assert client.list_multipart_uploads(Bucket=site.bucket).get("Uploads")
    with page.expect_response(lambda r: r.url.endswith("/multipart/abort")) as aborted:
        page.get_by_role("button", name="Discard the unfinished upload of medium.bin").click()
    assert aborted.value.ok
    expect(page.locator(".dfs3-unfinished")).to_be_hidden()
    assert client.list_multipart_uploads(Bucket=site.bucket).get("Uploads") is None
    page.reload()
    page.wait_for_load_state("networkidle")
    expect(page.locator(".dfs3-unfinished")).to_be_hidden()


# Wraps the browser's own navigator.wakeLock.request, logging each request and
# each release the page makes of the lock it got.
WAKE_LOCK_LOG = """(() => {
    window.wakeLockLog = [];
    const wakeLock = navigator.wakeLock;
    const request = wakeLock.request.bind(wakeLock);
    wakeLock.request = async (type) => {
        wakeLockLog.push(`request ${type}`);
        const sentinel = await request(type);
        const release = sentinel.release.bind(sentinel);
        sentinel.release = () => {
            wakeLockLog.push("release");
            return release();
        };
        return sentinel;
    };
})()"""


def test_screen_is_kept_on_while_files_upload(page, tmp_path):
    page.add_init_script(WAKE_LOCK_LOG)
    page.goto(PAGE)
    prepares = RequestGate(page, re.compile(r"/-/prepare$"), "POST")
    choose(page, make_file(tmp_path, "a.bin", 1000))
    wait_until(page, lambda: len(prepares.held) == 1)
    wait_until(page, lambda: page.evaluate("wakeLockLog").count("request screen") == 1)
    assert page.evaluate("wakeLockLog") == ["request screen"]
    prepares.open()
    expect(page.locator(".dfs3-file")).to_have_attribute("data-status", "done", timeout=30_000)
    wait_until(page, lambda: page.evaluate("wakeLockLog") == ["request screen", "release"])


PASTE = """([name, selector]) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File(["pasted bytes"], name, {type: "text/plain"}));
    const target = document.querySelector(selector);
    target.focus?.();
    return target.dispatchEvent(new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true, cancelable: true}));
}"""


def test_files_pasted_on_the_page_are_uploaded_but_not_those_pasted_into_a_field(page):
    """Issue 22.7: paste files from the clipboard (a screenshot, files copied in a file manager)."""
    page.goto(PAGE)
    page.evaluate(
        "() => document.body.append(Object.assign(document.createElement('textarea'), {id: 'notes'}))"
    )
    # Pasted into a text field, a file is the field's business.
    page.evaluate(PASTE, ["into-field.txt", "#notes"])
    page.evaluate(PASTE, ["pasted.txt", "body"])
    row = page.locator(".dfs3-file")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-status", "done", timeout=30_000)
    expect(row.locator(".dfs3-name")).to_have_text("pasted.txt")
