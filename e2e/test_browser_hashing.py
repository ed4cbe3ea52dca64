"""The browser's SHA-256 (static/checksums.js, static/sha256-worker.js) in real
Chromium, checked against hashlib on random files, served by a real Datasette.

The files reach the page through a file input, as a user's do: Chromium reads
them from disk, so a whole file is in the page's memory only if our code puts
it there (the memory test relies on that).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import time
from pathlib import Path

import pytest

# The benchmarks' peak-memory probe, so the test and benchmarks/browser_hashing.py measure alike.
from benchmarks.memory import PeakRSS, chromium_renderer_pids
from tests.live_servers import DatasetteProcess

MIB = 1024 * 1024
SIZES = [0, 1, 5 * MIB - 1, 8 * MIB + 3, 40 * MIB + 5]
STATIC = "/-/static-plugins/datasette_files_s3"
# A name Chromium resolves to 127.0.0.1 without treating it as loopback: a
# plain-http page from there is not a secure context, so it has no crypto.subtle.
INSECURE_HOST = "files-s3-insecure.test"


@pytest.fixture(scope="module")
def server():
    """A Datasette with the plugin and no sources: it serves static/ as the plugin ships it."""
    datasette = DatasetteProcess({}).start()
    yield datasette
    datasette.stop()


@pytest.fixture(scope="module")
def browser(launch_chromium):
    """Our own Chromium: one that knows INSECURE_HOST, and whose processes are only ours."""
    browser = launch_chromium([f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1"])
    yield browser
    browser.close()


def random_file(directory: Path, size: int) -> Path:
    path = directory / f"random-{size}.bin"
    with open(path, "wb") as f:
        left = size
        while left:
            f.write(os.urandom(min(left, 4 * MIB)))
            left -= min(left, 4 * MIB)
    return path


def sha256_of(path: Path) -> hashlib._Hash:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * MIB), b""):
            digest.update(chunk)
    return digest


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{size: path} of random files, one per size in SIZES."""
    directory = tmp_path_factory.mktemp("hashing")
    return {size: random_file(directory, size) for size in SIZES}


def open_page(browser, origin: str, paths):
    """A page at `origin` with `paths` chosen in a file input (window.files by name) and checksums.js loaded."""
    page = browser.new_page()
    page.goto(origin + "/")
    page.evaluate(
        """() => {
            const input = Object.assign(document.createElement("input"), {type: "file", multiple: true, id: "files"});
            document.body.append(input);
        }"""
    )
    page.set_input_files("#files", [str(p) for p in paths])
    page.evaluate(
        """async (url) => {
            window.files = Object.fromEntries([...document.getElementById("files").files].map((f) => [f.name, f]));
            window.checksums = await import(url);
        }""",
        origin + STATIC + "/checksums.js",
    )
    return page


@pytest.fixture(scope="module")
def page(browser, server, files):
    page = open_page(browser, server.url, files.values())
    yield page
    page.close()


def part_digests(path: Path, part_size: int) -> list[str]:
    """hashlib's base64 SHA-256 of each part_size slice of the file: what sha256Base64 should give."""
    data = path.read_bytes()
    return [
        base64.b64encode(hashlib.sha256(data[start : start + part_size]).digest()).decode()
        for start in range(0, len(data), part_size)
    ]


def whole_file_sha256(page, path: Path) -> str:
    """wholeFileSha256 of the chosen file: lowercase hex."""
    return page.evaluate("(name) => checksums.wholeFileSha256(files[name])", path.name)


def assert_workers_all_gone(page, timeout: float = 10) -> None:
    """Every worker the page started has been terminated (Playwright drops one once Chromium reports it gone)."""
    deadline = time.monotonic() + timeout
    while page.workers and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert page.workers == []


@pytest.mark.parametrize("size", SIZES)
def test_sha256_base64_matches_hashlib(page, files, size):
    """The per-part value for x-amz-checksum-sha256: base64 of the raw digest, by WebCrypto."""
    expected = base64.b64encode(sha256_of(files[size]).digest()).decode()
    assert page.evaluate("(name) => checksums.sha256Base64(files[name])", files[size].name) == expected


def test_sha256_base64_of_parts_hashed_at_once_match_hashlib(page, files):
    """Parts hashed concurrently, twice, so reused read buffers cross between calls."""
    path, part_size = files[40 * MIB + 5], 5 * MIB - 1
    expected = part_digests(path, part_size)
    digests = page.evaluate(
        """async ([name, partSize]) => {
            const file = files[name];
            const parts = [];
            for (let start = 0; start < file.size; start += partSize) parts.push(file.slice(start, start + partSize));
            const once = () => Promise.all(parts.map((part) => checksums.sha256Base64(part)));
            return [await once(), await once()];
        }""",
        [path.name, part_size],
    )
    assert digests == [expected, expected]


@pytest.mark.parametrize("size", SIZES)
def test_worker_whole_file_sha256_matches_hashlib(page, files, size):
    assert whole_file_sha256(page, files[size]) == sha256_of(files[size]).hexdigest()


def test_hex_converts_to_base64(page):
    empty_hex = hashlib.sha256(b"").hexdigest()
    empty_base64 = base64.b64encode(hashlib.sha256(b"").digest()).decode()
    digest = hashlib.sha256(b"datasette").digest()
    result = page.evaluate(
        """([emptyHex, upperHex]) => ({
            empty: checksums.hexToBase64(emptyHex),
            upper: checksums.hexToBase64(upperHex),
        })""",
        [empty_hex, digest.hex().upper()],
    )
    assert result == {"empty": empty_base64, "upper": base64.b64encode(digest).decode()}


@pytest.mark.parametrize(
    "call",
    [
        "checksums.hexToBase64('abc')",
        "checksums.hexToBase64('zz')",
        "checksums.hexToBase64(null)",
    ],
)
def test_conversions_refuse_malformed_input(page, call):
    assert (
        page.evaluate(f"() => {{ try {{ {call}; return null; }} catch (e) {{ return e.name; }} }}")
        == "TypeError"
    )


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("sha256Base64('not a file')", "TypeError: sha256Base64 needs a File or Blob"),
        ("wholeFileSha256('not a file')", "TypeError: wholeFileSha256 needs a File or Blob"),
        (
            "wholeFileSha256(() => 1)",
            "DataCloneError: Failed to execute 'postMessage' on 'Worker': () => 1 could not be cloned.",
        ),
    ],
)
def test_bad_arguments_reject_with_the_reason_and_leave_no_worker(page, call, error):
    outcome = page.evaluate(
        f"() => checksums.{call}.then((hex) => hex, (e) => `${{e.name}}: ${{e.message}}`)"
    )
    assert outcome == error
    assert_workers_all_gone(page)


def test_abort_rejects_and_terminates_the_worker(page, files):
    outcome = page.evaluate(
        """async (name) => {
            const controller = new AbortController();
            // Started (the worker exists and has the file), then aborted before it can answer.
            const hashing = checksums.wholeFileSha256(files[name], {signal: controller.signal});
            controller.abort();
            try {
                await hashing;
                return "resolved";
            } catch (error) {
                return error.name;
            }
        }""",
        files[40 * MIB + 5].name,
    )
    assert outcome == "AbortError"
    assert_workers_all_gone(page)


def test_an_aborted_signal_rejects_before_any_work(page, files):
    outcome = page.evaluate(
        """(name) => {
            const signal = AbortSignal.abort();
            return Promise.allSettled([
                checksums.sha256Base64(files[name], {signal}),
                checksums.wholeFileSha256(files[name], {signal}),
            ]).then((results) => results.map((r) => r.reason?.name));
        }""",
        files[1].name,
    )
    assert outcome == ["AbortError", "AbortError"]


@pytest.fixture(scope="module")
def collecting_page(launch_chromium, server, files):
    """A page whose Chromium exposes gc(), so a test can collect garbage while reads are pending."""
    browser = launch_chromium(["--js-flags=--expose-gc"])
    page = open_page(browser, server.url, [files[40 * MIB + 5]])
    yield page
    browser.close()


# Promise.race against this: a read that never settles gives "hung", not a test that never ends.
HUNG_AFTER_20_S = "new Promise((resolve) => setTimeout(() => resolve('hung'), 20000))"


def settled_while_collecting_garbage(page, start: str, arg):
    """What the promise from the JavaScript function `start(arg)` settles to while
    the page calls gc() every millisecond, or "hung" if it has not settled in 20 s."""
    return page.evaluate(
        f"""async (arg) => {{
            const collecting = setInterval(() => gc(), 1);
            try {{
                return await Promise.race([({start})(arg), {HUNG_AFTER_20_S}]);
            }} finally {{
                clearInterval(collecting);
            }}
        }}""",
        arg,
    )


def hash_in_wrapped_worker(page, server, prelude: str, path: Path) -> dict:
    """Our sha256-worker.js, loaded by a wrapper worker that first runs the
    JavaScript `prelude`, hashes the chosen file.

    Returns {"hex": the digest, or "hung" after 20 s, "notes": the types of any
    other messages the worker posted, in order}.
    """
    return page.evaluate(
        f"""async ([workerUrl, prelude, name]) => {{
            const source = `${{prelude}}\nawait import(${{JSON.stringify(workerUrl)}});\npostMessage({{type: "ready"}});`;
            const worker = new Worker(URL.createObjectURL(new Blob([source], {{type: "text/javascript"}})), {{type: "module"}});
            const notes = [];
            const hashing = new Promise((resolve, reject) => {{
                worker.onerror = (e) => reject(new Error(e.message));
                worker.onmessage = ({{data}}) => {{
                    if (data.type === "ready") worker.postMessage({{blob: files[name]}});
                    else if (data.type === "done") resolve(data.hex);
                    else if (data.type === "error") reject(new Error(data.message));
                    else notes.push(data.type);
                }};
            }});
            try {{
                return {{hex: await Promise.race([hashing, {HUNG_AFTER_20_S}]), notes}};
            }} finally {{
                worker.terminate();
            }}
        }}""",
        [server.url + STATIC + "/sha256-worker.js", prelude, path.name],
    )


def test_parts_hash_while_garbage_is_collected_all_the_time(collecting_page, files):
    """Chromium collected a Blob stream with a read pending, and the read never settled.

    That hung a CI run for an hour. gc() every millisecond makes the
    collection certain: without blob-bytes.js holding its streams, the first
    read hangs.
    """
    path, part_size = files[40 * MIB + 5], 5 * MIB - 1
    digests = settled_while_collecting_garbage(
        collecting_page,
        """([name, partSize]) => {
            const file = files[name];
            const parts = [];
            for (let start = 0; start < file.size; start += partSize) parts.push(file.slice(start, start + partSize));
            return Promise.all(parts.map((part) => checksums.sha256Base64(part)));
        }""",
        [path.name, part_size],
    )
    assert digests == part_digests(path, part_size)


def test_whole_file_hash_survives_garbage_collection_in_the_page(collecting_page, files):
    """wholeFileSha256 while the page collects garbage every millisecond: the
    worker and its pending answer must stay alive with nothing else holding them."""
    path = files[40 * MIB + 5]
    outcome = settled_while_collecting_garbage(
        collecting_page,
        "(name) => checksums.wholeFileSha256(files[name])",
        path.name,
    )
    assert outcome == sha256_of(path).hexdigest()


def test_worker_hashes_while_garbage_is_collected_all_the_time(collecting_page, server, files):
    """The same in the worker: a wrapper collects garbage every millisecond, then loads ours."""
    path = files[40 * MIB + 5]
    outcome = hash_in_wrapped_worker(collecting_page, server, "setInterval(() => gc(), 1);", path)
    assert outcome == {"hex": sha256_of(path).hexdigest(), "notes": []}


# Makes getReader({mode: "byob"}) throw as it does where Blob streams are not
# byte streams, and posts a note each time it is asked for one.
REFUSE_BYOB_READERS = """
const getReader = ReadableStream.prototype.getReader;
ReadableStream.prototype.getReader = function (options) {
    if (options?.mode !== "byob") return getReader.call(this, options);
    postMessage({type: "byob-refused"});
    throw new TypeError("Cannot use a BYOB reader with a non-byte stream");
};"""


def test_worker_without_byte_streams_still_matches_hashlib(page, server, files):
    """Browsers whose Blob.stream() is not a byte stream get the stream's own chunks.

    Chromium's is a byte stream, so this test takes that away: a wrapper worker
    makes getReader({mode: "byob"}) throw as it does there, then loads ours.
    """
    path = files[8 * MIB + 3]
    outcome = hash_in_wrapped_worker(page, server, REFUSE_BYOB_READERS, path)
    assert outcome == {"hex": sha256_of(path).hexdigest(), "notes": ["byob-refused"]}


def test_page_without_webcrypto_hashes_parts_in_the_worker(browser, server, files):
    """Plain http from a host other than localhost: no crypto.subtle, the same digests."""
    sizes = [0, 8 * MIB + 3]
    origin = f"http://{INSECURE_HOST}:{server.port}"
    page = open_page(browser, origin, [files[size] for size in sizes])
    try:
        assert page.evaluate("() => [isSecureContext, typeof crypto.subtle]") == [False, "undefined"]
        for size in sizes:
            expected = sha256_of(files[size])
            name = files[size].name
            assert page.evaluate("(name) => checksums.sha256Base64(files[name])", name) == (
                base64.b64encode(expected.digest()).decode()
            )
            assert whole_file_sha256(page, files[size]) == expected.hexdigest()
    finally:
        page.close()


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS reset needs Linux /proc")
def test_worker_memory_stays_flat_while_hashing_a_large_file(browser, server, tmp_path):
    """Peak RSS of Chromium's renderers grows by a small constant, not by the file.

    PeakRSS resets each process's peak (VmHWM) first, so the peak it reads
    afterwards is the true peak during the hash, not a sample.
    Measured: about +20 MiB for 256 MiB and for 1 GiB; reading the whole file
    adds 256 MiB or more, reading slices with slice().arrayBuffer() 60-100 MiB.
    """
    size = 256 * MIB
    path = random_file(tmp_path, size)
    page = open_page(browser, server.url, [path])
    try:
        with contextlib.ExitStack() as stack:
            peaks = [stack.enter_context(PeakRSS(pid)) for pid in chromium_renderer_pids(browser)]
            hex_digest = whole_file_sha256(page, path)
        growth_mib = max(peak.growth_mib for peak in peaks)
        assert hex_digest == sha256_of(path).hexdigest()
        assert growth_mib < 64, (
            f"a renderer's peak RSS grew by {growth_mib:.0f} MiB hashing {size // MIB} MiB"
        )
    finally:
        page.close()
        path.unlink()
