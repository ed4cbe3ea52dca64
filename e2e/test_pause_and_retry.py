"""Pausing, resuming and retrying uploads (issue 22.2), in real Chromium against
`datasette serve` and this run's S3 server: a paused multipart upload keeps its
parts and sends nothing, a failed one continues where it stopped, and a whole
batch pauses and resumes."""

from __future__ import annotations

import contextlib
import re

import pytest
from playwright.sync_api import expect

from e2e.accessibility import axe_violations
from e2e.page_helpers import MIB, PAGE, PartGate, RequestGate, choose, make_file, wait_until
from e2e.test_multipart_upload import PartLog, assert_object_is

# Parts of 5 MiB, as in test_multipart_upload.py.
pytestmark = pytest.mark.parametrize("site", [{"config": {"multipart_threshold": "5MiB"}}], indirect=True)

PARTS = set(range(1, 10))


@pytest.fixture(scope="module")
def medium_file(tmp_path_factory):
    """40 MiB and a bit: 9 parts of 5 MiB."""
    return make_file(tmp_path_factory.mktemp("medium"), "medium.bin", 40 * MIB + 777)


def parts_in_bucket(browser_s3, bucket) -> set[int]:
    """The part numbers of the bucket's one unfinished multipart upload."""
    client = browser_s3.client()
    (upload,) = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    listed = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return {part["PartNumber"] for part in listed.get("Parts", [])}


def open_quietly(gate: RequestGate) -> None:
    """Let held requests go; one the page has aborted meanwhile is gone already."""
    gate.opened = True
    held, gate.held = gate.held, []
    for route in held:
        with contextlib.suppress(Exception):
            route.continue_()


def resumed_parts(page, click) -> set[int]:
    """Click, and the part numbers the create it leads to finds in the bucket (it must resume)."""
    with page.expect_response(lambda r: r.url.endswith("/multipart/create")) as created:
        click()
    answer = created.value.json()
    assert answer["resumed"] is True
    return {part["part_number"] for part in answer["parts"]}


def test_paused_multipart_upload_keeps_its_parts_sends_nothing_and_resumes(
    page, site, browser_s3, medium_file
):
    log = PartLog(page)
    page.goto(PAGE)
    gate = PartGate(page, let_through=2)
    choose(page, medium_file)
    wait_until(page, lambda: len(log.finished) >= 2 and gate.held)
    sent = set(log.finished)
    held = len(gate.held)
    row = page.locator(".dfs3-file")
    page.get_by_role("button", name="Pause medium.bin").click()
    expect(row).to_have_attribute("data-status", "paused")
    expect(row.locator(".dfs3-state")).to_have_text("Paused")
    # Focus moves from the hidden Pause to Resume, not to <body>.
    expect(page.get_by_role("button", name="Resume medium.bin")).to_be_focused()
    sent_while_paused = []
    page.on("request", lambda request: sent_while_paused.append(request.url))
    page.on("requestfinished", lambda request: sent_while_paused.append(request.url))
    # The parts held when the user paused were aborted by the page (once Chromium
    # says so, letting them go cannot send them): letting them go sends nothing.
    wait_until(page, lambda: log.failures >= held)
    open_quietly(gate)
    # Not aborted: S3 still holds the upload and its two parts.
    assert parts_in_bucket(browser_s3, site.bucket) == sent
    page.evaluate("() => new Promise(requestAnimationFrame)")
    assert sent_while_paused == []
    assert row.get_attribute("data-status") == "paused"
    log.finished.clear()
    in_bucket = resumed_parts(page, page.get_by_role("button", name="Resume medium.bin").click)
    assert in_bucket == sent
    expect(row).to_have_attribute("data-status", "done", timeout=60_000)
    log.catch_up(page, PARTS - in_bucket)
    assert sorted(log.finished) == sorted(PARTS - in_bucket)
    assert_object_is(browser_s3, site, row, medium_file, 9)


class RefuseParts(PartGate):
    """Hold the page's part PUTs after the first two; `refuse_held()` answers the
    held ones with S3's 403 AccessDenied (a refusal no retry heals), and every
    later PUT goes through."""

    def __init__(self, page, origin):
        super().__init__(page, let_through=2)
        self.origin = origin

    def refuse_held(self):
        self.opened = True
        held, self.held = self.held, []
        for route in held:
            route.fulfill(
                status=403,
                headers={"Access-Control-Allow-Origin": self.origin, "Content-Type": "application/xml"},
                body="<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
            )


def test_failed_multipart_upload_retries_from_where_it_stopped(page, site, browser_s3, medium_file):
    log = PartLog(page)
    page.goto(PAGE)
    refusals = RefuseParts(page, site.url)
    choose(page, medium_file)
    # Two parts reach the bucket before the next ones are refused.
    wait_until(page, lambda: len(log.finished) >= 2 and refusals.held)
    sent = set(log.finished)
    refusals.refuse_held()
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "error", timeout=30_000)
    expect(row.locator(".dfs3-error")).to_contain_text("AccessDenied")
    retry = page.get_by_role("button", name="Retry medium.bin")
    expect(retry).to_be_visible()
    expect(page.get_by_role("button", name="Pause medium.bin")).to_be_hidden()
    assert parts_in_bucket(browser_s3, site.bucket) == sent
    log.finished.clear()
    assert resumed_parts(page, retry.click) == sent
    expect(row).to_have_attribute("data-status", "done", timeout=60_000)
    log.catch_up(page, PARTS - sent)
    assert sorted(log.finished) == sorted(PARTS - sent)
    assert_object_is(browser_s3, site, row, medium_file, 9)


def test_pause_all_and_resume_all(page, tmp_path):
    page.goto(PAGE)
    prepares = RequestGate(page, re.compile(r"/-/prepare$"), "POST")
    choose(page, make_file(tmp_path, "a.bin", 1000), make_file(tmp_path, "b.bin", 2000))
    wait_until(page, lambda: len(prepares.held) == 2)
    rows = page.locator(".dfs3-file")
    page.get_by_role("button", name="Pause all").click()
    for n in range(2):
        expect(rows.nth(n)).to_have_attribute("data-status", "paused")
    expect(page.get_by_role("button", name="Resume all")).to_be_focused()
    # Paused rows as a screen-reader user meets them (e2e/accessibility.py).
    assert axe_violations(page) == []
    open_quietly(prepares)
    page.get_by_role("button", name="Resume all").click()
    for n in range(2):
        expect(rows.nth(n)).to_have_attribute("data-status", "done", timeout=30_000)
    expect(page.locator(".dfs3-summary")).to_contain_text("2 uploaded")


def test_failed_single_request_upload_retries(page, site, browser_s3, tmp_path):
    """A file sent in one request has nothing in the bucket to continue from: Retry sends it again."""
    refused = []

    def refuse_the_first_post(route):
        if route.request.method == "POST" and not refused:
            refused.append(route.request.url)
            route.fulfill(
                status=403,
                headers={"Access-Control-Allow-Origin": site.url, "Content-Type": "application/xml"},
                body="<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
            )
        else:
            route.continue_()

    page.goto(PAGE)
    page.route(lambda url: not url.startswith(site.url), refuse_the_first_post)
    choose(page, make_file(tmp_path, "small.bin", 1000))
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "error", timeout=30_000)
    assert refused
    page.get_by_role("button", name="Retry small.bin").click()
    expect(row).to_have_attribute("data-status", "done", timeout=30_000)
    file_id = row.get_attribute("data-file-id")
    key = f"uploads/{file_id.removeprefix('df-')}/small.bin"
    assert browser_s3.client().head_object(Bucket=site.bucket, Key=key)["ContentLength"] == 1000


def test_retry_after_a_failed_complete_completes_without_sending_again(page, site, browser_s3, tmp_path):
    """The bytes reached the bucket, complete was refused (403 here; a complete that
    registered the file and lost every answer ends the same way): Retry completes
    them, with no second prepare or POST, so the file is registered once."""
    refused = []
    sent = []

    def refuse_the_first_complete(route):
        if not refused:
            refused.append(route.request.url)
            route.fulfill(status=403, json={"ok": False, "errors": ["Permission denied (test)"]})
        else:
            route.continue_()

    page.goto(PAGE)
    page.on("request", lambda r: r.method == "POST" and not r.url.startswith(site.url) and sent.append(r.url))
    page.route(re.compile(r"/-/complete$"), refuse_the_first_complete)
    prepares = []
    page.on("request", lambda r: r.url.endswith("/-/prepare") and prepares.append(r.url))
    choose(page, make_file(tmp_path, "once.bin", 1000))
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "error", timeout=30_000)
    assert refused and len(sent) == 1 and len(prepares) == 1
    page.get_by_role("button", name="Retry once.bin").click()
    expect(row).to_have_attribute("data-status", "done", timeout=30_000)
    assert len(sent) == 1 and len(prepares) == 1, (sent, prepares)
    listing = browser_s3.client().list_objects_v2(Bucket=site.bucket).get("Contents", [])
    assert [item["Key"].rsplit("/", 1)[1] for item in listing] == ["once.bin"]
    file_id = row.get_attribute("data-file-id")
    assert page.evaluate("id => fetch(`/-/files/${id}.json`).then(r => r.status)", file_id) == 200
