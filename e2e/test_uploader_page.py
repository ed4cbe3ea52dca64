"""The bundled uploader as a user meets it, in real Chromium against `datasette serve`
and this run's S3 server: what a fresh page shows, what the total means, a quiet console,
and errors that name their real cause (a missing bucket is not a CORS problem)."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from e2e.page_helpers import MIB, PAGE, PartGate, RequestGate, choose, make_file, wait_until
from tests.live_servers import DatasetteProcess, live_config

CORS_ADVICE = re.compile(r"CORS|files-s3 cors", re.IGNORECASE)


@pytest.fixture
def site(request, browser_s3):
    """A Datasette on a fresh bucket, multipart above 5 MiB. `indirect` params:
    `config` (more source options), `bucket_exists` (False: the source names a
    bucket nobody created), `strict_cors` (only bucket CORS rules apply: the
    run's own S3 server, which on moto runs without its global CORS rule)."""
    options = getattr(request, "param", {})
    server = request.getfixturevalue("s3_server") if options.get("strict_cors") else browser_s3
    bucket = f"e2e-ui-{uuid.uuid4().hex[:12]}"
    config = server.source_config(bucket, multipart_threshold="5MiB", **options.get("config", {}))
    datasette = DatasetteProcess(live_config(config))
    if options.get("bucket_exists", True):
        server.create_bucket(bucket, cors_origins=[datasette.url])
    datasette.start()
    datasette.bucket = bucket
    datasette.s3 = server
    yield datasette
    datasette.stop()


class Requests:
    """Every request the page sends, as (method, url)."""

    def __init__(self, page):
        self.seen: list[tuple[str, str]] = []
        page.on("request", lambda request: self.seen.append((request.method, request.url)))

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, url in self.seen if m == method and re.search(pattern, url))


def error_of(row) -> str:
    expect(row).to_have_attribute("data-status", "error", timeout=30_000)
    return row.locator(".dfs3-error").text_content()


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


@pytest.mark.parametrize("site", [{"config": {"allowed_content_types": ["text/plain"]}}], indirect=True)
def test_total_counts_failed_files_as_what_they_sent(page, tmp_path):
    texts = [make_file(tmp_path, f"ok-{n}.txt", 100 + n) for n in range(2)]
    refused = [make_file(tmp_path, f"refused-{n}.bin", 3) for n in range(2)]
    page.goto(PAGE)
    choose(page, *texts, *refused)
    expect(page.locator(".dfs3-summary")).to_contain_text("2 uploaded, 2 failed", timeout=30_000)
    expect(page.locator(".dfs3-total-detail")).to_have_text("Total: 201 B of 201 B · 100% · 2 failed")
    assert page.locator(".dfs3-total progress").evaluate("p => p.value") == 1


def test_a_cancelled_file_never_moves_the_total_back_and_its_row_keeps_what_it_sent(page, tmp_path):
    small = make_file(tmp_path, "small.bin", 1500)
    medium = make_file(tmp_path, "medium.bin", 40 * MIB + 777)
    page.goto(PAGE)
    choose(page, small)
    rows = page.locator(".dfs3-file")
    expect(rows.nth(0)).to_have_attribute("data-status", "done", timeout=30_000)
    # Two of the medium file's nine 5 MiB parts go through; the rest wait until the
    # cancel, so it lands mid-upload however fast or busy the machine is. (The small
    # file went first: held parts fill the four request slots every file shares.)
    PartGate(page, let_through=2)
    choose(page, medium)
    page.wait_for_function("() => document.querySelectorAll('.dfs3-file progress')[1].value >= 0.24")
    before = page.locator(".dfs3-total progress").evaluate("p => p.value")
    rows.nth(1).locator(".dfs3-cancel").click()
    expect(rows.nth(1)).to_have_attribute("data-status", "cancelled")
    # The cancelled file counts as what it sent, on both sides: the bar does not go back.
    expect(page.locator(".dfs3-total-detail")).to_have_text(
        re.compile(r"Total: ([\d.]+ MB) of \1 · 100% · 1 cancelled")
    )
    assert page.locator(".dfs3-total progress").evaluate("p => p.value") >= before
    sent = rows.nth(1).locator(".dfs3-detail").text_content()
    match = re.fullmatch(r"([\d.]+) MB of 42 MB sent · (\d+)%", sent)
    assert match and float(match.group(1)) > 4 and int(match.group(2)) >= 10, sent


def test_focus_after_a_cancel_moves_to_the_next_file_then_the_chooser(page, tmp_path):
    """A cancelled row has no button left: focus must not fall to <body> (issue 22.10)."""
    page.goto(PAGE)
    prepares = RequestGate(page, re.compile(r"/-/prepare$"), "POST")
    choose(page, make_file(tmp_path, "a.bin", 1000), make_file(tmp_path, "b.bin", 2000))
    # Both files stay uploading: their prepares are held (never let go).
    wait_until(page, lambda: len(prepares.held) == 2)
    page.get_by_role("button", name="Cancel a.bin").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".dfs3-file").nth(0)).to_have_attribute("data-status", "cancelled")
    expect(page.get_by_role("button", name="Pause b.bin")).to_be_focused()
    page.get_by_role("button", name="Cancel b.bin").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".dfs3-file").nth(1)).to_have_attribute("data-status", "cancelled")
    expect(page.locator("datasette-files-s3-upload input[type=file]")).to_be_focused()


# --- errors that cannot heal -------------------------------------------------


@pytest.mark.parametrize("site", [{"bucket_exists": False}], indirect=True)
def test_missing_bucket_at_create_is_told_once_without_cors_advice(page, site, tmp_path):
    requests = Requests(page)
    page.goto(PAGE)
    choose(page, make_file(tmp_path, "big.bin", 6 * MIB))
    error = error_of(page.locator(".dfs3-file"))
    assert f"bucket '{site.bucket}' does not exist" in error
    assert not CORS_ADVICE.search(error), error
    assert requests.count("POST", r"/multipart/create$") == 1


@pytest.mark.parametrize("site", [{"bucket_exists": False}], indirect=True)
def test_missing_bucket_on_direct_upload_is_told_once_without_cors_advice(page, site, tmp_path):
    requests = Requests(page)
    page.goto(PAGE)
    choose(page, make_file(tmp_path, "small.bin", 1000))
    error = error_of(page.locator(".dfs3-file"))
    assert "does not exist" in error
    assert not CORS_ADVICE.search(error), error
    assert requests.count("POST", r"/-/prepare$") == 1
    assert requests.count("POST", "^" + re.escape(site.s3.endpoint_url)) <= 1


# moto without its global CORS rule answers POST uploads with no CORS headers at
# all, as S3 answers for a bucket that is not there: the page sees no response.
@pytest.mark.parametrize("site", [{"strict_cors": True}], indirect=True)
def test_no_answer_from_a_bucket_that_is_gone_names_the_bucket_not_cors(page, site, tmp_path):
    """The bucket is deleted after prepare answered (so the page goes on to send),
    and Datasette, asked same-origin, finds it missing."""

    def delete_bucket_then_answer(route):
        answer = route.fetch()
        site.s3.client().delete_bucket(Bucket=site.bucket)
        route.fulfill(response=answer)

    page.route(re.compile(r"/-/prepare$"), delete_bucket_then_answer)
    requests = Requests(page)
    page.goto(PAGE)
    choose(page, make_file(tmp_path, "small.bin", 1000))
    error = error_of(page.locator(".dfs3-file"))
    assert f"bucket '{site.bucket}' does not exist" in error
    assert not CORS_ADVICE.search(error), error
    assert requests.count("POST", "^" + re.escape(site.s3.endpoint_url)) == 1
    assert requests.count("POST", r"/-/bucket$") == 1


def test_refused_request_is_shown_as_datasette_said_and_not_sent_again(page, site, tmp_path):
    """A 4xx from our endpoints needs someone to change something: here the
    actor's sign-in is gone, and create answers 403."""
    requests = Requests(page)
    page.goto(PAGE)
    page.context.clear_cookies()
    choose(page, make_file(tmp_path, "big.bin", 6 * MIB))
    error = error_of(page.locator(".dfs3-file"))
    assert "Permission denied: you need files-upload on source 's3files'" in error
    assert requests.count("POST", r"/multipart/create$") == 1


# --- which answers the uploader retries --------------------------------------

HEAL = """async () => {
  const q = await import("/-/static-plugins/datasette_files_s3/upload-queue.js");
  const ours = { ok: false, errors: ["what went wrong"] };
  const statuses = [408, 429, 500, 502, 503, 504, 400, 403, 404, 409, 413];
  const unmarked = statuses.filter((s) => q.datasetteAnswerCanHeal(s, ours));
  const proxy = [500, 502].filter((s) => q.datasetteAnswerCanHeal(s, null));
  const marked = [[502, false], [502, true], [503, false], [400, true]]
    .map(([s, retryable]) => q.datasetteAnswerCanHeal(s, { ...ours, retryable }));
  const xml = (code, message) => `<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  const bucket = (status, code, message, resignable) =>
    q.bucketError({ status, text: xml(code, message) }, { resignable }).retryable;
  return {
    unmarked, proxy, marked,
    s3: {
      slowDown: bucket(503, "SlowDown", "Please reduce your request rate.", false),
      internal: bucket(500, "InternalError", "We encountered an internal error.", false),
      noSuchBucket: bucket(404, "NoSuchBucket", "The specified bucket does not exist", true),
      denied: bucket(403, "AccessDenied", "Access Denied", true),
      expiredResigned: bucket(403, "AccessDenied", "Request has expired", true),
      expiredSameUrl: bucket(403, "AccessDenied", "Request has expired", false),
      tooLarge: bucket(400, "EntityTooLarge", "Your proposed upload exceeds the maximum", true),
    },
    message: q.bucketError({ status: 404, text: xml("NoSuchBucket", "The specified bucket does not exist") }).message,
  };
}"""


def test_only_answers_that_can_heal_are_retried(page):
    page.goto(PAGE)
    decided = page.evaluate(HEAL)
    assert decided["unmarked"] == [408, 429, 503, 504]
    assert decided["proxy"] == [500, 502]
    assert decided["marked"] == [False, True, False, True]  # the server's own word wins
    assert decided["s3"] == {
        "slowDown": True,
        "internal": True,
        "noSuchBucket": False,
        "denied": False,
        "expiredResigned": True,
        "expiredSameUrl": False,
        "tooLarge": False,
    }
    assert decided["message"] == (
        "The bucket refused the upload (404 NoSuchBucket): The specified bucket does not exist"
    )
