"""An offline browser fails no file: the uploader says it waits for the network and
carries on when it is back; in real Chromium against `datasette serve` and this
run's S3 server."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from e2e.page_helpers import PAGE, RequestGate, choose, make_file, wait_until

# One retry: without the wait for the network, a file would give up within a
# second of going offline instead of the half minute six retries take.
ONE_RETRY = """() => {
    const old = document.querySelector("datasette-files-s3-upload");
    const element = old.cloneNode(false);
    element.setAttribute("retries", "1");
    old.replaceWith(element);
}"""

WAITING = "waiting for the network"


def test_files_wait_offline_and_finish_when_the_network_is_back(page, tmp_path):
    page.goto(PAGE)
    page.evaluate(ONE_RETRY)
    # The three prepares wait in Chromium and are sent only once the browser is
    # offline: every file then loses its connection at a known point.
    prepares = RequestGate(page, re.compile(r"/-/prepare$"), "POST")
    names = ["one.bin", "two.bin", "three.bin"]
    choose(page, *(make_file(tmp_path, name, 100_000) for name in names))
    wait_until(page, lambda: len(prepares.held) == 3)
    page.context.set_offline(True)
    prepares.open()

    rows = page.locator(".dfs3-file")
    for i in range(3):
        expect(rows.nth(i).locator(".dfs3-detail")).to_contain_text(WAITING, timeout=30_000)
    # Longer than one retry's backoff (at most 0.5 s): a file counting its
    # retries would have failed by now. Nothing has failed; everyone waits.
    page.wait_for_timeout(2000)
    assert page.locator(".dfs3-file[data-status=failed]").count() == 0
    for i in range(3):
        expect(rows.nth(i).locator(".dfs3-detail")).to_contain_text(WAITING)

    page.context.set_offline(False)
    for i in range(3):
        expect(rows.nth(i)).to_have_attribute("data-status", "done", timeout=60_000)
    expect(page.locator(".dfs3-summary")).to_contain_text("3 uploaded")
