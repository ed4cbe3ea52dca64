"""Browser tests: real Chromium (Debian's) driven by Playwright against a real
`datasette serve` process and this run's S3 server (`--s3=moto|localstack`).

A missing browser is a failure under CI (CI=true), never a silent skip;
elsewhere the tests are skipped, and the run ends with how to get Chromium
(e2e/chromium.py, which also finds Playwright's own download).
"""

from __future__ import annotations

import os
import uuid

import pytest

from e2e.chromium import HOW_TO_GET_CHROMIUM, find_chromium
from tests.live_servers import CHROMIUM_ARGS, DatasetteProcess, live_config
from tests.s3_servers import MotoServer

# Set when the browser tests are skipped for want of a Chromium (never under CI).
browser_tests_skipped = False


@pytest.fixture(scope="session")
def launch_chromium():
    """A function that launches Chromium, with extra command-line switches if given.

    The caller closes what it launches; `chromium` is the shared browser.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        executable = find_chromium(playwright)
        if executable is None:
            if os.environ.get("CI"):
                pytest.fail(HOW_TO_GET_CHROMIUM)
            global browser_tests_skipped
            browser_tests_skipped = True
            pytest.skip("no Chromium: see the note at the end of the run")
        yield lambda extra_args=(): playwright.chromium.launch(
            executable_path=executable, args=[*CHROMIUM_ARGS, *extra_args]
        )


def pytest_terminal_summary(terminalreporter):
    """Say once, at the end where it is read, how to get the skipped browser tests running."""
    if browser_tests_skipped:
        terminalreporter.section("browser tests skipped")
        terminalreporter.write_line(HOW_TO_GET_CHROMIUM)


@pytest.fixture(scope="session")
def chromium(launch_chromium):
    """A Playwright Chromium browser, shared by the session."""
    browser = launch_chromium()
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def browser_s3(request, s3_kind):
    """The S3 server browsers upload to: LocalStack as it is, or a moto with global CORS on.

    moto 5.2 sends no CORS headers on POST-object responses when only bucket
    rules apply (see MotoServer), so the browser could not read a presigned
    POST's answer; LocalStack answers from the bucket's rules, as S3 does.
    """
    if s3_kind != "moto":
        yield request.getfixturevalue("s3_server")
        return
    server = MotoServer(global_cors=True).start()
    yield server
    server.stop()


@pytest.fixture
def site(request, browser_s3):
    """A fresh bucket (CORS for the Datasette origin, ETag exposed) and a Datasette serving it.

    `indirect` param: `{"config": {...}}`, more source options.
    """
    options = getattr(request, "param", {})
    bucket = f"e2e-{uuid.uuid4().hex[:16]}"
    datasette = DatasetteProcess(live_config(browser_s3.source_config(bucket, **options.get("config", {}))))
    browser_s3.create_bucket(bucket, cors_origins=[datasette.url])
    datasette.start()
    datasette.bucket = bucket
    yield datasette
    datasette.stop()


@pytest.fixture
def page(chromium, site):
    """A browser page signed in as `alice` on the live Datasette."""
    context = chromium.new_context(base_url=site.url)
    context.add_cookies([{"name": "ds_actor", "value": site.cookie_for("alice"), "url": site.url}])
    page = context.new_page()
    yield page
    context.close()
