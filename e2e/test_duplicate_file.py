"""The same file chosen again while it uploads is refused at once, with a message
that says so, and the first copy finishes; in real Chromium against `datasette
serve` and this run's S3 server."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from e2e.page_helpers import PAGE, RequestGate, choose, make_file, wait_until


def test_the_same_file_added_while_it_uploads_is_refused_at_once(page, tmp_path):
    page.goto(PAGE)
    # The first copy's prepare waits in Chromium: it is still uploading when the
    # second copy is chosen.
    prepares = RequestGate(page, re.compile(r"/-/prepare$"), "POST")
    path = make_file(tmp_path, "twice.bin", 100_000)
    choose(page, path)
    wait_until(page, lambda: len(prepares.held) == 1)
    choose(page, path)

    rows = page.locator(".dfs3-file")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_have_attribute("data-status", "error")
    expect(rows.nth(1)).to_contain_text("twice.bin is already being uploaded")
    assert len(prepares.held) == 1, "the refused copy sent a request"

    prepares.open()
    expect(rows.nth(0)).to_have_attribute("data-status", "done", timeout=60_000)
    expect(rows.nth(1)).not_to_contain_text("connection")
