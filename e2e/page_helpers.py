"""What the browser tests share: the uploader page, test files, Chromium's
network emulation, and waiting on a page without racing its timers."""

from __future__ import annotations

import os
import re

MIB = 1024**2
PAGE = "/-/files-s3/upload/s3files"


def make_file(directory, name, size) -> str:
    """A file of `size` random bytes in `directory`; returns its path."""
    path = directory / name
    with open(path, "wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
        f.write(os.urandom(size % MIB))
    return str(path)


class Network:
    """Chromium's own network emulation for one page: throttle uploads or go offline."""

    def __init__(self, page):
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")

    def set(self, offline=False, upload=-1):
        self.cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": upload},
        )


def wait_until(page, condition, timeout=30):
    """Let the page run (and its events arrive) until condition() holds."""
    for _ in range(int(timeout * 20)):
        if condition():
            return
        page.wait_for_timeout(50)
    raise AssertionError("condition not met in time")


def record_details(page) -> None:
    """Record every text the rows' detail lines show, as it is drawn (read with
    details_shown), so a line shown only while a retry waits is seen however late
    the test looks."""
    page.evaluate(
        """() => {
            window.detailsShown = [];
            new MutationObserver(() => {
                for (const detail of document.querySelectorAll(".dfs3-detail")) detailsShown.push(detail.textContent);
            }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }"""
    )


def details_shown(page) -> list[str]:
    """The detail lines recorded since record_details."""
    return page.evaluate("() => window.detailsShown")


def choose(page, *paths):
    """Choose files in the bundled uploader's file input."""
    page.set_input_files("datasette-files-s3-upload input[type=file]", list(paths))


PART_NUMBER = re.compile(r"[?&]partNumber=(\d+)")


class RequestGate:
    """Hold the page's `method` requests to URLs matching `pattern` after the first `let_through`.

    Tests that act mid-upload (cancel, reload, a dropped network) used to race a
    throttled upload, and on a busy machine the upload sometimes won. Holding
    requests gives them a fixed point instead: the first ones are through, the
    rest are waiting, and nothing moves until the test says so. The held
    requests are real requests, paused in Chromium before they are sent.
    """

    def __init__(self, page, pattern, method: str, let_through: int = 0):
        self.method = method
        self.let_through = let_through
        self.passed = 0
        self.held = []
        self.opened = False
        page.route(pattern, self._on_request)

    def _on_request(self, route):
        if route.request.method != self.method:
            route.continue_()
        elif self.opened or self.passed < self.let_through:
            self.passed += 1
            route.continue_()
        else:
            self.held.append(route)

    def open(self):
        """Send the held requests and every later one."""
        self.opened = True
        held, self.held = self.held, []
        for route in held:
            route.continue_()


class PartGate(RequestGate):
    """Hold the page's part PUTs to the bucket after the first `let_through`."""

    def __init__(self, page, let_through: int):
        super().__init__(page, PART_NUMBER, "PUT", let_through)
