"""The uploader and our pages that show files, as a screen-reader or keyboard user
meets them (issue 22 item 10): axe-core finds no critical or serious violation,
everything has a name, and each file's outcome is read out."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from e2e.accessibility import axe_violations
from e2e.page_helpers import PAGE, RequestGate, choose, make_file, wait_until

REFUSING_BIN = {"config": {"allowed_content_types": ["text/plain"]}}


def record_announcements(page) -> None:
    """Record every line the status region shows, as it is added (read with announced)."""
    page.evaluate(
        """() => {
            window.announced = [];
            const region = document.querySelector("datasette-files-s3-upload [role=status]");
            new MutationObserver((records) => {
                for (const r of records) for (const node of r.addedNodes) announced.push(node.textContent);
            }).observe(region, {childList: true});
        }"""
    )


def announced(page) -> list[str]:
    return page.evaluate("() => window.announced")


@pytest.mark.parametrize("site", [REFUSING_BIN], indirect=True)
def test_axe_finds_nothing_critical_or_serious_on_our_pages(page, tmp_path):
    page.goto(PAGE)
    assert axe_violations(page) == []
    # Rows in each state: one uploaded, one refused, one waiting on its held prepare.
    prepares = RequestGate(page, re.compile(r"/-/prepare$"), "POST", let_through=2)
    choose(page, make_file(tmp_path, "ok.txt", 1000), make_file(tmp_path, "refused.bin", 10))
    expect(page.locator(".dfs3-summary")).to_contain_text("1 uploaded, 1 failed", timeout=30_000)
    choose(page, make_file(tmp_path, "held.txt", 10))
    wait_until(page, lambda: len(prepares.held) == 1)
    assert axe_violations(page) == []
    file_page = page.locator(".dfs3-name a").first.get_attribute("href")
    prepares.open()
    # datasette-files' source page and upload page, where our uploader takes the stock one's place.
    for url in ["/-/files/source/s3files", "/-/files/upload/s3files"]:
        page.goto(url)
        expect(page.locator("datasette-files-s3-upload input[type=file]")).to_be_attached()
        assert axe_violations(page) == [], url
    page.goto(file_page)
    expect(page.get_by_text("ok.txt").first).to_be_visible()
    assert axe_violations(page) == [], file_page


def test_chooser_and_progress_bars_have_names_and_values(page, tmp_path):
    page.goto(PAGE)
    expect(page.locator(".dfs3-input")).to_have_accessible_name("Choose files to upload to s3files")
    choose(page, make_file(tmp_path, "a.txt", 1500))
    expect(page.locator(".dfs3-file")).to_have_attribute("data-status", "done", timeout=30_000)
    bar = page.get_by_role("progressbar", name="Upload progress of a.txt")
    expect(bar).to_have_attribute("aria-valuetext", "100%, 1.5 kB of 1.5 kB")
    total = page.get_by_role("progressbar", name="Total upload progress")
    expect(total).to_have_attribute("aria-valuetext", "100%, 1.5 kB of 1.5 kB")


@pytest.mark.parametrize("site", [REFUSING_BIN], indirect=True)
def test_status_region_reads_out_uploaded_failed_and_retrying(page, tmp_path):
    answered_503 = []

    def first_prepare_busy(route):
        if answered_503:
            route.continue_()
            return
        answered_503.append(route.request.url)
        # Retry-After holds the wait open for a few frames: a backoff's full jitter
        # can be a millisecond, shorter than the frame that would draw it.
        route.fulfill(
            status=503,
            headers={"Retry-After": "2"},
            content_type="application/json",
            body='{"ok": false, "errors": ["busy"]}',
        )

    page.goto(PAGE)
    record_announcements(page)
    page.route(re.compile(r"/-/prepare$"), first_prepare_busy)
    choose(page, make_file(tmp_path, "slow.txt", 100))
    expect(page.locator(".dfs3-file")).to_have_attribute("data-status", "done", timeout=30_000)
    choose(page, make_file(tmp_path, "refused.bin", 10))
    expect(page.locator(".dfs3-file").nth(1)).to_have_attribute("data-status", "error", timeout=30_000)
    wait_until(page, lambda: len(announced(page)) >= 3)
    said = announced(page)
    assert said[0] == "slow.txt: Datasette answered 503; retrying", said
    assert said[1] == "Uploaded slow.txt", said
    assert said[2].startswith("Failed: refused.bin. "), said
    assert len(said) == 3, said


def test_enter_on_the_file_chooser_opens_the_picker(page):
    # Playwright turns on its file-chooser interception without waiting for
    # Chromium to confirm it: a listener added just before the key press lost
    # that race on a busy machine, and the chooser opened unseen. Added before
    # the page loads, it is in place long before Enter.
    choosers = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    page.goto(PAGE)
    page.locator(".dfs3-input").focus()
    expect(page.locator(".dfs3-input")).to_be_focused()
    page.keyboard.press("Enter")
    wait_until(page, lambda: choosers)
    assert choosers[0].is_multiple()
