"""Browser tests: real Chromium (Debian's) driven by Playwright against a real
`datasette serve` process and a `moto_server` process.

A missing browser is a failure under CI (CI=true), never a silent skip;
elsewhere the tests are skipped with a note on how to install Chromium.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from live_servers import DatasetteProcess, MotoProcess, live_config  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def launch_chromium():
    """A function that launches Chromium, with extra command-line switches if given.

    The caller closes what it launches; `chromium` is the shared browser.
    """
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        message = f"Chromium not found at {CHROMIUM}: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield lambda extra_args=(): playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args]
        )


@pytest.fixture(scope="session")
def chromium(launch_chromium):
    """A Playwright Chromium browser, shared by the session."""
    browser = launch_chromium()
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def moto():
    """One moto_server process for the browser tests (global CORS on: see MotoProcess)."""
    server = MotoProcess(global_cors=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_strict_cors():
    """A moto_server where only bucket CORS rules apply, for tests of CORS failures."""
    server = MotoProcess().start()
    yield server
    server.stop()


@pytest.fixture
def live(moto):
    """A fresh bucket (CORS for the Datasette origin, ETag exposed) and a Datasette serving it."""
    bucket = f"e2e-{uuid.uuid4().hex[:16]}"
    datasette = DatasetteProcess(live_config(moto.source_config(bucket)))
    moto.create_bucket(bucket, cors_origins=[datasette.url])
    datasette.start()
    datasette.bucket = bucket
    yield datasette
    datasette.stop()


@pytest.fixture
def page(chromium, live):
    """A browser page signed in as `alice` on the live Datasette."""
    context = chromium.new_context(base_url=live.url)
    context.add_cookies([{"name": "ds_actor", "value": live.cookie_for("alice"), "url": live.url}])
    page = context.new_page()
    yield page
    context.close()
