"""The bundled uploader in real Chromium against `datasette serve` and this run's S3 server:
parallel parts, a network drop, reload-and-resume, cancel, and bucket CORS problems."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

# The benchmarks' peak-memory probe, so this test and benchmarks/browser_upload.py measure alike.
from benchmarks.memory import PeakRSS, chromium_renderer_pids
from e2e.page_helpers import (
    MIB,
    PAGE,
    PART_NUMBER,
    Network,
    PartGate,
    choose,
    details_shown,
    make_file,
    record_details,
    wait_until,
)
from tests.live_servers import DatasetteProcess, live_config


@pytest.fixture
def site(request, browser_s3):
    """Like conftest's `site`, but parts are 5 MiB (threshold 5 MiB); `indirect` params
    may give the bucket's CORS rule other origins (`cors_origins`) or no ETag exposure."""
    options = getattr(request, "param", {})
    bucket = f"e2e-mp-{uuid.uuid4().hex[:12]}"
    datasette = DatasetteProcess(live_config(browser_s3.source_config(bucket, multipart_threshold="5MiB")))
    origins = options.get("cors_origins", [datasette.url])
    browser_s3.create_bucket(bucket, cors_origins=origins, expose_etag=options.get("expose_etag", True))
    datasette.start()
    datasette.bucket = bucket
    yield datasette
    datasette.stop()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """100 MiB and a bit: 21 parts of 5 MiB."""
    return make_file(tmp_path_factory.mktemp("big"), "big.bin", 100 * MIB + 12345)


@pytest.fixture(scope="module")
def medium_file(tmp_path_factory):
    """40 MiB and a bit: 9 parts of 5 MiB."""
    return make_file(tmp_path_factory.mktemp("medium"), "medium.bin", 40 * MIB + 777)


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_object(browser_s3, bucket, key) -> str:
    digest = hashlib.sha256()
    for chunk in browser_s3.client().get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(MIB):
        digest.update(chunk)
    return digest.hexdigest()


def composite_hash(data_parts: list[bytes]) -> str:
    """content_hash for a multipart object of these parts (see checksums.py)."""
    digests = b"".join(hashlib.sha256(part).digest() for part in data_parts)
    return f"sha256-composite:{hashlib.sha256(digests).hexdigest()}-{len(data_parts)}"


def file_parts(path, part_size=5 * MIB) -> list[bytes]:
    with open(path, "rb") as f:
        return list(iter(lambda: f.read(part_size), b""))


def shown_content_hash(page, file_id) -> str:
    """The "Content Hash" datasette-files' file page shows."""
    page.goto(f"/-/files/{file_id}")
    return page.locator("tr:has(th:text-is('Content Hash')) td").inner_text()


def recorded_content_hash(page, file_id) -> str | None:
    """The file's content_hash as its JSON shows it."""
    return page.evaluate(
        "id => fetch(`/-/files/${id}.json`).then(r => r.json()).then(j => j.content_hash)", file_id
    )


def assert_object_is(browser_s3, site, row, path, parts):
    file_id = row.get_attribute("data-file-id")
    assert file_id and file_id.startswith("df-")
    key = f"uploads/{file_id.removeprefix('df-')}/{os.path.basename(path)}"
    head = browser_s3.client().head_object(Bucket=site.bucket, Key=key)
    assert head["ETag"].strip('"').endswith(f"-{parts}")  # assembled from parts
    assert sha256_object(browser_s3, site.bucket, key) == sha256_file(path)
    # The parts the store holds make the composite the browser's part hashes made;
    # a store that reports no composite (Ceph RGW) checked none: no content_hash then.
    expected = composite_hash(file_parts(path)) if browser_s3.reports_checksums else None
    assert recorded_content_hash(row.page, file_id) == expected


class PartLog:
    """Part PUTs seen by the page: in flight now, the most at once, and finished ones."""

    def __init__(self, page):
        self.in_flight = 0
        self.max_in_flight = 0
        self.finished: list[int] = []
        self.failures = 0
        page.on("request", self.started)
        page.on("requestfinished", self.done)
        page.on("requestfailed", self.failed)

    @staticmethod
    def number(request):
        match = PART_NUMBER.search(request.url)
        return int(match.group(1)) if request.method == "PUT" and match else None

    def started(self, request):
        if self.number(request):
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def done(self, request):
        if self.number(request):
            self.in_flight -= 1
            response = request.response()
            if response and response.status == 200:
                self.finished.append(self.number(request))

    def catch_up(self, page, expected: set[int], timeout: float = 20) -> None:
        """Let Playwright deliver the part events it still holds, until every part in
        `expected` is logged (or `timeout` s pass; the caller's assertion then names
        what is missing). 'requestfinished' arrives on Playwright's own schedule, and
        on a busy 2-core CI machine it came after the row said done: 4 of 21 parts
        were logged when the test looked."""
        with contextlib.suppress(AssertionError):
            wait_until(page, lambda: set(self.finished) >= expected, timeout)

    def failed(self, request):
        # With checksums each part's URL is signed just before its PUT, once
        # the part is hashed: a drop may hit that sign request instead.
        if request.url.endswith("/multipart/sign"):
            self.failures += 1
        elif self.number(request):
            self.in_flight -= 1
            self.failures += 1


def test_large_file_uploads_in_parallel_parts(page, site, browser_s3, big_file):
    log = PartLog(page)
    page.goto(PAGE)
    choose(page, big_file)
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=90_000)
    log.catch_up(page, set(range(1, 22)))
    assert log.max_in_flight >= 2
    assert sorted(log.finished) == list(range(1, 22))
    assert_object_is(browser_s3, site, row, big_file, 21)
    summary_link = page.locator(".dfs3-summary a")
    expect(summary_link).to_have_attribute("href", f"/-/files/{row.get_attribute('data-file-id')}")


def test_part_hashes_hold_only_the_parts_being_sent(chromium, page, tmp_path):
    """Each part is read into memory to hash it, so it is hashed only when its turn
    to be sent comes. Hashing every part up front held the whole file: a renderer's
    peak RSS grew by 297 MiB for 256 MiB (benchmarks/browser_upload.py); now it grows
    by about 4 parts in flight plus a constant (measured +55 MiB here)."""
    size = 192 * MIB
    path = make_file(tmp_path, "hashed.bin", size)
    page.goto(PAGE)
    with contextlib.ExitStack() as stack:
        peaks = [stack.enter_context(PeakRSS(pid)) for pid in chromium_renderer_pids(chromium)]
        choose(page, path)
        row = page.locator(".dfs3-file")
        expect(row).to_have_attribute("data-status", "done", timeout=120_000)
    growth_mib = max(peak.growth_mib for peak in peaks)
    assert growth_mib < size / MIB / 2, f"a renderer's peak RSS grew by {growth_mib:.0f} MiB"


def test_upload_survives_network_drop(page, site, browser_s3, medium_file):
    """Two parts land, then the network goes down for 1.5 s just as the held ones are
    sent: they fail, and the uploader retries them once it is back."""
    log = PartLog(page)
    page.goto(PAGE)
    gate = PartGate(page, let_through=2)
    net = Network(page)
    choose(page, medium_file)
    wait_until(page, lambda: len(log.finished) >= 2 and gate.held)
    net.set(offline=True)
    gate.open()
    page.wait_for_timeout(1500)
    net.set()
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=60_000)
    log.catch_up(page, set(range(1, 10)))
    assert log.failures >= 1, "the drop did not hit a part or sign request"
    assert sorted(set(log.finished)) == list(range(1, 10))
    assert_object_is(browser_s3, site, row, medium_file, 9)


def test_stalled_part_is_abandoned_and_sent_again(page, site, browser_s3, medium_file):
    """A part request that never gets anywhere is retried after stall-timeout seconds.

    The first PUT of part 3 is held in Chromium and never sent: to the page it
    is a connection that stalls without failing. Without the uploader's stall
    watchdog the file would wait on it for good.
    """
    log = PartLog(page)
    page.goto(PAGE)
    page.evaluate(
        """() => {
            const old = document.querySelector("datasette-files-s3-upload");
            const element = old.cloneNode(false);
            element.setAttribute("stall-timeout", "2");
            old.replaceWith(element);
        }"""
    )
    record_details(page)
    # The retry waits a full-jitter backoff (upload-queue.js), which can be a
    # millisecond: too short for the row, drawn at most every 100 ms, to show that
    # it waits. Near the top of its range it is half a second.
    page.evaluate("() => { Math.random = () => 0.99; }")
    part_3_requests = []

    def hold_the_first_try_of_part_3(route):
        match = PART_NUMBER.search(route.request.url)
        if route.request.method == "PUT" and match and match.group(1) == "3":
            part_3_requests.append(route)
            if len(part_3_requests) == 1:
                return  # never sent and never answered
        route.continue_()

    page.route(PART_NUMBER, hold_the_first_try_of_part_3)
    choose(page, medium_file)
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=60_000)
    log.catch_up(page, set(range(1, 10)))
    assert len(part_3_requests) >= 2
    assert sorted(set(log.finished)) == list(range(1, 10))
    assert any("The connection stalled; retrying" in text for text in details_shown(page))
    assert_object_is(browser_s3, site, row, medium_file, 9)


def test_reload_resumes_without_resending_parts_in_bucket(page, site, browser_s3, medium_file):
    log = PartLog(page)
    page.goto(PAGE)
    gate = PartGate(page, let_through=2)
    choose(page, medium_file)
    wait_until(page, lambda: len(log.finished) >= 2)
    page.reload()
    gate.open()
    before = set(log.finished)
    assert before, "no part finished before the reload"
    log.finished.clear()
    with page.expect_response(lambda r: r.url.endswith("/multipart/create")) as created:
        choose(page, medium_file)
    answer = created.value.json()
    assert answer["resumed"] is True
    in_bucket = {p["part_number"] for p in answer["parts"]}
    assert in_bucket >= before
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=60_000)
    log.catch_up(page, set(range(1, 10)) - in_bucket)
    assert set(log.finished).isdisjoint(in_bucket)
    assert set(log.finished) | in_bucket == set(range(1, 10))
    assert_object_is(browser_s3, site, row, medium_file, 9)


def test_cancel_aborts_multipart_upload_in_bucket(page, site, browser_s3, medium_file):
    page.goto(PAGE)
    PartGate(page, let_through=1)
    choose(page, medium_file)
    page.wait_for_function("() => document.querySelector('.dfs3-file progress').value > 0.1")
    client = browser_s3.client()
    assert client.list_multipart_uploads(Bucket=site.bucket).get("Uploads")
    page.click(".dfs3-file .dfs3-cancel")
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "cancelled")
    for _ in range(50):
        if not client.list_multipart_uploads(Bucket=site.bucket).get("Uploads"):
            break
        page.wait_for_timeout(100)
    assert client.list_multipart_uploads(Bucket=site.bucket).get("Uploads") is None
    assert client.list_objects_v2(Bucket=site.bucket).get("Contents") is None


def shell_env() -> dict:
    """A terminal's environment, where `datasette` is this project's."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


# moto answers CORS even for a bucket without a rule, so "blocked" means a rule for another origin.
@pytest.mark.parametrize(
    "site, expected",
    [
        ({"expose_etag": False}, ["did not let this page read its ETag", "ExposeHeaders"]),
        ({"cors_origins": ["https://elsewhere.example"]}, ["blocked the upload", "CORS rule"]),
    ],
    indirect=["site"],
    ids=["etag-not-exposed", "origin-not-allowed"],
)
def test_bucket_cors_problem_stops_with_the_fix(page, site, browser_s3, s3_kind, medium_file, expected):
    page.goto(PAGE)
    choose(page, medium_file)
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "error", timeout=30_000)
    error = row.locator(".dfs3-error").text_content()
    assert all(words in error for words in expected), error
    assert f"origin {site.url} on the bucket" in error
    # The fix, run as shown from where the server was started, lets the same file through.
    fix = re.search(r"datasette files-s3 cors \S.*? --apply", error).group(0)
    assert f" --origin {site.url} --apply" in fix
    ran = subprocess.run(shlex.split(fix), cwd=site.workdir, env=shell_env(), capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    rules = browser_s3.client().get_bucket_cors(Bucket=site.bucket)["CORSRules"]
    assert any(site.url in r["AllowedOrigins"] and "ETag" in r.get("ExposeHeaders", []) for r in rules)
    if s3_kind == "moto" and len(rules) > 1:
        return  # moto refuses a preflight that any one rule does not match; S3 takes the first that does
    page.goto(PAGE)
    choose(page, medium_file)
    expect(page.locator(".dfs3-file")).to_have_attribute("data-status", "done", timeout=60_000)


@pytest.mark.parametrize("size", [1 * MIB + 5, 6 * MIB + 5], ids=["direct-post", "multipart"])
def test_a_lost_complete_answer_still_ends_done(page, site, browser_s3, tmp_path, size):
    """Datasette registers the file but its answer never reaches the page: the
    retried complete is told "already completed" with the file, and shows it."""
    path = make_file(tmp_path, "lost-answer.bin", size)
    answered = []

    def lose_the_first_answer(route):
        if answered:
            route.continue_()
            return
        answered.append(route.fetch().status)  # Datasette really completes the upload
        route.abort("connectionreset")

    page.route(re.compile(r"/-/(multipart/)?complete$"), lose_the_first_answer)
    page.goto(PAGE)
    with page.expect_response(lambda r: r.url.endswith("complete") and r.status == 409) as retried:
        choose(page, path)
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=30_000)
    assert answered == [201]
    assert row.get_attribute("data-file-id") == retried.value.json()["file"]["id"]
    objects = browser_s3.client().list_objects_v2(Bucket=site.bucket).get("Contents", [])
    assert [o["Size"] for o in objects] == [size]


def test_cancel_while_create_is_on_its_way_aborts_the_upload_s3_started(page, site, browser_s3, tmp_path):
    path = make_file(tmp_path, "cancel-early.bin", 6 * MIB + 5)
    held = []

    def hold_the_answer(route):
        held.append((route, route.fetch()))  # S3's multipart upload now exists

    page.route(re.compile(r"/multipart/create$"), hold_the_answer)
    page.goto(PAGE)
    choose(page, path)
    wait_until(page, lambda: held)
    client = browser_s3.client()
    assert client.list_multipart_uploads(Bucket=site.bucket).get("Uploads")
    page.click(".dfs3-file .dfs3-cancel")
    expect(page.locator(".dfs3-file")).to_have_attribute("data-status", "cancelled")
    # The upload is over for the page although create has not answered yet.
    expect(page.locator(".dfs3-summary")).to_contain_text("1 cancelled")
    route, answer = held[0]
    route.fulfill(response=answer)
    wait_until(page, lambda: not client.list_multipart_uploads(Bucket=site.bucket).get("Uploads"), timeout=10)
    assert client.list_objects_v2(Bucket=site.bucket).get("Contents") is None


DROP_FILES = """(sizes) => {
  const transfer = new DataTransfer();
  sizes.forEach((size, n) => {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = (i * 7 + n) % 251;
    transfer.items.add(new File([bytes], `dropped-${n}.bin`, { type: "application/octet-stream" }));
  });
  return transfer;
}"""


def dropped_bytes(size: int, n: int) -> bytes:
    return bytes((i * 7 + n) % 251 for i in range(size))


def test_dropped_files_upload_one_direct_one_multipart(page, site, browser_s3):
    sizes = [300_000, 6 * MIB + 11]  # under and over the 5 MiB multipart threshold
    page.goto(PAGE)
    transfer = page.evaluate_handle(DROP_FILES, sizes)
    page.dispatch_event(".dfs3-drop", "dragover", {"dataTransfer": transfer})
    expect(page.locator(".dfs3-drop")).to_have_class(re.compile("dfs3-over"))
    page.dispatch_event(".dfs3-drop", "drop", {"dataTransfer": transfer})
    expect(page.locator(".dfs3-drop")).not_to_have_class(re.compile("dfs3-over"))
    rows = page.locator(".dfs3-file")
    expect(rows).to_have_count(2)
    for n in range(2):
        expect(rows.nth(n)).to_have_attribute("data-status", "done", timeout=60_000)
    client = browser_s3.client()
    for n, size in enumerate(sizes):
        file_id = rows.nth(n).get_attribute("data-file-id")
        key = f"uploads/{file_id.removeprefix('df-')}/dropped-{n}.bin"
        assert client.get_object(Bucket=site.bucket, Key=key)["Body"].read() == dropped_bytes(size, n)
    ids = [rows.nth(n).get_attribute("data-file-id") for n in range(2)]
    # What each file page shows is what the store checked: the whole file's
    # SHA-256 for the single POST, the composite of the parts for multipart
    # (on a store that reports none, Ceph RGW, nothing checked it: no content_hash).
    assert (
        shown_content_hash(page, ids[0]) == "sha256:" + hashlib.sha256(dropped_bytes(sizes[0], 0)).hexdigest()
    )
    data = dropped_bytes(sizes[1], 1)
    if browser_s3.reports_checksums:
        assert shown_content_hash(page, ids[1]) == composite_hash([data[: 5 * MIB], data[5 * MIB :]])
    else:
        assert recorded_content_hash(page, ids[1]) is None


def test_reload_after_a_lost_complete_answer_shows_the_file_without_uploading_again(
    page, site, browser_s3, tmp_path
):
    path = make_file(tmp_path, "reloaded.bin", 6 * MIB + 5)
    registered = []

    def complete_then_drop(route):
        # The first complete reaches Datasette, which registers the file; no
        # answer ever reaches the page, so it still remembers the token.
        if registered:
            route.abort("connectionreset")
            return
        answer = route.fetch()
        route.abort("connectionreset")
        registered.append(answer.json()["file"]["id"])

    page.route(re.compile(r"/multipart/complete$"), complete_then_drop)
    page.goto(PAGE)
    choose(page, path)
    wait_until(page, lambda: registered)
    page.reload()
    with page.expect_response(lambda r: r.url.endswith("/multipart/create")) as created:
        choose(page, path)
    assert created.value.status == 409
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=30_000)
    assert row.get_attribute("data-file-id") == registered[0]
    objects = browser_s3.client().list_objects_v2(Bucket=site.bucket).get("Contents", [])
    assert len(objects) == 1
    assert browser_s3.client().list_multipart_uploads(Bucket=site.bucket).get("Uploads") is None
