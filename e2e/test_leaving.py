"""Leaving the page while files upload asks first; in real Chromium against
`datasette serve` and this run's S3 server."""

from __future__ import annotations

import re

from e2e.page_helpers import PAGE, RequestGate, choose, make_file, wait_until


def test_closing_the_page_mid_upload_asks_first(page, tmp_path):
    page.goto(PAGE)
    prepares = RequestGate(page, re.compile(r"/-/prepare$"), "POST")
    choose(page, make_file(tmp_path, "busy.bin", 100_000))
    wait_until(page, lambda: len(prepares.held) == 1)
    # Chromium shows a beforeunload prompt only to a page the user has touched.
    page.click(".dfs3-summary, .dfs3-total", force=True)
    dialogs = []
    # Staying: the page is still there, so waiting on it is safe; without the
    # prompt it closes and the wait fails.
    page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss()))
    page.close(run_before_unload=True)
    wait_until(page, lambda: dialogs)
    assert dialogs == ["beforeunload"]
    assert not page.is_closed()
    prepares.open()
