"""The bundled uploader as a user meets it, in real Chromium against `datasette serve`
and `moto_server`: what a fresh page shows, a quiet console."""

from __future__ import annotations

import uuid

import pytest
from live_servers import DatasetteProcess, live_config
from page_helpers import PAGE, choose, make_file
from playwright.sync_api import expect


@pytest.fixture
def live(request, moto):
    """A Datasette on a fresh bucket, multipart above 5 MiB; an `indirect` param's
    `config` adds source options."""
    options = getattr(request, "param", {})
    bucket = f"e2e-ui-{uuid.uuid4().hex[:12]}"
    config = moto.source_config(bucket, multipart_threshold="5MiB", **options.get("config", {}))
    datasette = DatasetteProcess(live_config(config))
    moto.create_bucket(bucket, cors_origins=[datasette.url])
    datasette.start()
    datasette.bucket = bucket
    yield datasette
    datasette.stop()


# --- a fresh page ------------------------------------------------------------


def test_fresh_page_shows_only_the_file_chooser(page):
    page.goto(PAGE)
    expect(page.locator("datasette-files-s3-upload input[type=file]")).to_be_visible()
    expect(page.locator(".dfs3-drop")).to_be_visible()
    for nothing_yet in [".dfs3-total", ".dfs3-total progress", ".dfs3-cancel-all", ".dfs3-summary"]:
        expect(page.locator(nothing_yet)).to_be_hidden()
    expect(page.locator(".dfs3-file")).to_have_count(0)


# --- the console -------------------------------------------------------------


def test_small_upload_leaves_the_console_quiet(page, tmp_path):
    """A direct POST needs no response header; reading ETag there made Chromium log
    `Refused to get unsafe header "ETag"`."""
    messages = []
    page.on("console", lambda message: messages.append((message.type, message.text)))
    page.goto(PAGE)
    choose(page, make_file(tmp_path, "small.bin", 2000))
    expect(page.locator(".dfs3-file")).to_have_attribute("data-status", "done", timeout=30_000)
    assert [m for m in messages if m[0] in ("error", "warning")] == []
