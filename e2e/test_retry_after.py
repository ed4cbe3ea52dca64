"""The uploader waits as long as a Retry-After header asks before it sends a refused
request again, says in the file's row what it waits for, and caps the wait; in real
Chromium against `datasette serve` and this run's S3 server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from e2e.page_helpers import PAGE, RequestGate, choose, details_shown, make_file, record_details, wait_until

PREPARE = re.compile(r"/-/prepare$")

# One unfinished direct upload per actor: of two files chosen at once, the second
# prepare is refused with 429 and a Retry-After saying when the first one's place
# frees itself, which is upload_expires away. Ten seconds keeps the test short;
# the first file's POST, sent as soon as its prepare answers, must reach the bucket
# within them (LocalStack enforces the policy's expiry).
UPLOAD_EXPIRES = 10
ONE_AT_A_TIME = {"config": {"max_pending_uploads": 1, "upload_expires": UPLOAD_EXPIRES}}

# The prepare requests as Chromium timed them, on one clock (ms since the page loaded).
PREPARE_TIMES = """() => performance.getEntriesByType("resource")
  .filter((entry) => entry.name.endsWith("/-/prepare"))
  .map((entry) => ({ start: entry.startTime, end: entry.responseEnd, status: entry.responseStatus }))"""

# performance timestamps are coarsened (to 0.1 ms here) and Chromium may fire a timer
# a fraction of a millisecond early on that clock; ignoring the Retry-After would
# retry seconds sooner (the first backoff is at most 0.5 s).
CLOCK_SLACK_MS = 5


@pytest.mark.parametrize("site", [ONE_AT_A_TIME], indirect=True)
def test_refused_prepare_is_sent_again_no_sooner_than_retry_after(page, tmp_path):
    refusals = []
    page.on("response", lambda r: PREPARE.search(r.url) and r.status == 429 and refusals.append(r.headers))
    # The first file's complete waits in Chromium until the second file has been
    # refused: its place stays taken, whichever file prepared first.
    completes = RequestGate(page, re.compile(r"/-/complete$"), "POST")
    page.goto(PAGE)
    record_details(page)
    choose(page, make_file(tmp_path, "one.bin", 1000), make_file(tmp_path, "two.bin", 2000))
    wait_until(page, lambda: refusals)
    retry_after = int(refusals[0]["retry-after"])
    assert 1 <= retry_after <= UPLOAD_EXPIRES
    completes.open()

    wait_until(page, lambda: page.locator(".dfs3-file[data-status=done]").count() == 2, timeout=60)
    expect(page.locator(".dfs3-summary")).to_contain_text("2 uploaded")
    times = page.evaluate(PREPARE_TIMES)
    assert sorted(t["status"] for t in times) == [200, 200, 429], times
    refused = next(t for t in times if t["status"] == 429)
    retries = [t for t in times if t["start"] > refused["end"]]
    assert len(retries) == 1, times
    assert retries[0]["start"] - refused["end"] >= retry_after * 1000 - CLOCK_SLACK_MS, times
    shown = details_shown(page)
    assert any(f"Too many uploads in progress; retrying in {retry_after} s" in text for text in shown), shown


# --- reading Retry-After -------------------------------------------------------

PARSE = """async () => {
  const q = await import("/-/static-plugins/datasette_files_s3/upload-queue.js");
  const now = Date.parse("Tue, 24 Nov 2026 12:00:00 GMT");
  const cases = {
    seconds: "5", zero: "0", spaced: " 7 ", huge: "99999999999",
    date: "Tue, 24 Nov 2026 12:00:30 GMT", pastDate: "Tue, 24 Nov 2026 11:00:00 GMT",
    farDate: "Wed, 25 Nov 2026 12:00:00 GMT",
    negative: "-5", fraction: "1.5", garbage: "soon", looseDate: "2026-11-24", empty: "", missing: null,
  };
  return Object.fromEntries(Object.entries(cases).map(([name, value]) => [name, q.parseRetryAfter(value, { now })]));
}"""


def test_retry_after_is_read_as_seconds_or_a_date_and_capped(page):
    page.goto(PAGE)
    assert page.evaluate(PARSE) == {
        "seconds": 5000,
        "zero": 0,
        "spaced": 7000,
        "huge": 60_000,  # RETRY_AFTER_MAX_MS
        "date": 30_000,
        "pastDate": 0,
        "farDate": 60_000,
        "negative": None,
        "fraction": None,
        "garbage": None,
        "looseDate": None,
        "empty": None,
        "missing": None,
    }


# Each call fails once and is cancelled in onRetry, so nothing really waits.
FIRST_WAIT = """async () => {
  const q = await import("/-/static-plugins/datasette_files_s3/upload-queue.js");
  async function firstWait(error) {
    const controller = new AbortController();
    const delays = [];
    try {
      await q.withRetries(() => { throw error; }, {
        signal: controller.signal,
        onRetry: (e, n, delay) => { delays.push(delay); controller.abort(); },
      });
    } catch (thrown) {
      return { delays, thrown: thrown.kind };
    }
  }
  const xml = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
  const slowDown = (headers) => q.bucketError({ status: 503, text: xml, headers });
  return {
    told: await firstWait(new q.UploadError("busy", { status: 429, retryable: true, retryAfter: 3000 })),
    final: await firstWait(new q.UploadError("no", { status: 400, retryAfter: 3000 })),
    untold: await firstWait(new q.UploadError("busy", { status: 503, retryable: true })),
    bucketTold: slowDown("content-type: application/xml\\r\\nRetry-After: 7\\r\\n").retryAfter,
    bucketUntold: slowDown("content-type: application/xml\\r\\n").retryAfter,
    reasons: [
      q.retryReason(new q.UploadError("x", { status: 429, retryable: true })),
      q.retryReason(slowDown("")),
      q.retryReason(new q.UploadError("x", { kind: "network", retryable: true })),
    ],
  };
}"""


def test_retries_wait_at_least_what_retry_after_asks(page):
    page.goto(PAGE)
    result = page.evaluate(FIRST_WAIT)
    assert result["told"] == {"delays": [3000], "thrown": "cancelled"}  # the backoff is at most 500
    assert result["final"] == {"delays": [], "thrown": "server"}  # not retryable stays final
    assert 0 <= result["untold"]["delays"][0] <= 500  # no Retry-After: the usual backoff
    assert result["bucketTold"] == 7000
    assert result["bucketUntold"] is None
    assert result["reasons"] == [
        "Too many uploads in progress",
        "The bucket asked to slow down",
        "Connection lost",
    ]
