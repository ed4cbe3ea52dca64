"""Which Chromium the browser tests launch, and what to tell a user who has none.

CHROMIUM_PATH if set; else Debian's /usr/bin/chromium; else the Chromium
Playwright downloads itself (`playwright install chromium`), where there is one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.live_servers import CHROMIUM

HOW_TO_GET_CHROMIUM = f"""\
No Chromium for the browser tests (e2e/): none at {CHROMIUM}, and no Chromium of
Playwright's own. To run them, get one of:
  sudo apt-get install -y chromium                (Debian's, at /usr/bin/chromium)
  uv run playwright install --with-deps chromium  (Playwright's own download: any Linux or macOS)
or point CHROMIUM_PATH at a Chromium or Chrome binary. Then run `uv run pytest` again."""


def find_chromium(playwright) -> str | None:
    """The Chromium binary to launch, or None when there is none."""
    if os.environ.get("CHROMIUM_PATH") or os.path.exists(CHROMIUM):
        return shutil.which(CHROMIUM)  # None when CHROMIUM_PATH names nothing executable
    own = playwright.chromium.executable_path
    return own if Path(own).is_file() else None
