"""What the browser tests share: the uploader page, test files, Chromium's
network emulation, and waiting on a page without racing its timers."""

from __future__ import annotations

import os

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


def choose(page, *paths):
    """Choose files in the bundled uploader's file input."""
    page.set_input_files("datasette-files-s3-upload input[type=file]", list(paths))
