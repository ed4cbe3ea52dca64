"""The bundled uploader as a user meets it, in real Chromium against `datasette serve`
and `moto_server`: what a fresh page shows, what the total means, a quiet console."""

from __future__ import annotations

import re
import uuid

import pytest
from live_servers import DatasetteProcess, live_config
from page_helpers import MIB, PAGE, Network, choose, make_file
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


# --- the total ---------------------------------------------------------------


@pytest.mark.parametrize("live", [{"config": {"allowed_content_types": ["text/plain"]}}], indirect=True)
def test_total_counts_uploaded_files_not_failed_ones(page, tmp_path):
    texts = [make_file(tmp_path, f"ok-{n}.txt", 100 + n) for n in range(2)]
    refused = [make_file(tmp_path, f"refused-{n}.bin", 3) for n in range(2)]
    page.goto(PAGE)
    choose(page, *texts, *refused)
    expect(page.locator(".dfs3-summary")).to_contain_text("2 uploaded, 2 failed", timeout=30_000)
    expect(page.locator(".dfs3-total-detail")).to_have_text(
        "Total: 201 B of 201 B · 100% · not counted: 2 failed"
    )
    assert page.locator(".dfs3-total progress").evaluate("p => p.value") == 1


def test_cancelled_file_leaves_the_total_and_its_row_keeps_what_it_sent(page, tmp_path):
    small = make_file(tmp_path, "small.bin", 1500)
    medium = make_file(tmp_path, "medium.bin", 40 * MIB + 777)
    page.goto(PAGE)
    Network(page).set(upload=10 * MIB)
    choose(page, small, medium)
    rows = page.locator(".dfs3-file")
    expect(rows.nth(0)).to_have_attribute("data-status", "done", timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll('.dfs3-file progress')[1].value > 0.1")
    rows.nth(1).locator(".dfs3-cancel").click()
    expect(rows.nth(1)).to_have_attribute("data-status", "cancelled")
    expect(page.locator(".dfs3-total-detail")).to_have_text(
        "Total: 1.5 kB of 1.5 kB · 100% · not counted: 1 cancelled"
    )
    sent = rows.nth(1).locator(".dfs3-detail").text_content()
    match = re.fullmatch(r"([\d.]+) MB of 42 MB sent · (\d+)%", sent)
    assert match and float(match.group(1)) > 4 and int(match.group(2)) >= 10, sent
