"""Benchmark: one very large file (10 GiB by default) through the bundled uploader in Chromium.

    uv run python benchmarks/big_upload.py                       # 10 GiB to LocalStack
    uv run python benchmarks/big_upload.py --store ceph --size-mib 3072
    uv run python benchmarks/big_upload.py --store moto --size-mib 12 --multipart-threshold 5   # smoke run

It answers one question: does a file far larger than the machine would like to
hold in memory go from the browser to the bucket whole, without Chromium or
Datasette growing with it? One run starts its own store (LocalStack keeps large
objects in temporary files; Ceph's memstore holds about twice the bytes in RAM,
capped at 4 GiB by scripts/ceph_rgw.py, so keep Ceph runs under about 3 GiB), one
`datasette serve` (`checksum: sha256`, the source's default multipart_threshold
unless one is given) and Chromium, all on loopback. It measures

- the upload's time in the page, from the file input's change event to the
  uploader's done event (create, every part and complete included);
- the peak RSS growth of Datasette and of every Chromium renderer (VmHWM, reset
  before the upload);
- a full read-back: the stored object is streamed from the store and its SHA-256
  compared with the file's, computed as the file was written.

The run fails (exit 1) when the upload fails, no content_hash is recorded on a
store that reports checksums, or the read-back differs. Not run in CI at full size
(minutes and 10 GiB of disk twice); e2e/test_benchmark_big_upload.py runs it tiny.
Results go to OUT/big-upload.md (also printed) and OUT/big-upload.json.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from playwright.sync_api import sync_playwright

from benchmarks import report
from benchmarks.browser_upload import TIMER, UploadFailed, log
from benchmarks.memory import PeakRSS, chromium_renderer_pids
from tests.live_servers import CHROMIUM, CHROMIUM_ARGS, DatasetteProcess, live_config
from tests.s3_servers import MotoServer, start_s3_server

HERE = Path(__file__).resolve().parent
MiB = 1024**2
MB = 1000**2
WRITE_CHUNK = 16 * MiB
POLL_SECONDS = 1.0


def make_file(directory: Path, size: int) -> tuple[Path, str]:
    """A file of random bytes, and its SHA-256, computed as it is written."""
    path = directory / f"big-{size}.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for start in range(0, size, WRITE_CHUNK):
            chunk = os.urandom(min(WRITE_CHUNK, size - start))
            digest.update(chunk)
            out.write(chunk)
    return path, digest.hexdigest()


def start_store(kind: str):
    # moto answers presigned POSTs with CORS headers only under its global rule (see MotoServer).
    return MotoServer(global_cors=True).start() if kind == "moto" else start_s3_server(kind)


def upload_in_browser(browser, datasette: DatasetteProcess, path: Path, timeout: float) -> dict:
    """Choose `path` on the uploader page and wait for its done event; the page's
    time, Datasette's and the renderers' peak RSS growth, and the file record."""
    context = browser.new_context(base_url=datasette.url)
    context.add_cookies([{"name": "ds_actor", "value": datasette.cookie_for("bench"), "url": datasette.url}])
    try:
        page = context.new_page()
        page.goto("/-/files-s3/upload/s3files")
        page.evaluate(TIMER)
        with contextlib.ExitStack() as stack:
            renderers = [stack.enter_context(PeakRSS(pid, 0.1)) for pid in chromium_renderer_pids(browser)]
            datasette_rss = stack.enter_context(PeakRSS(datasette.process.pid, 0.1))
            page.set_input_files("datasette-files-s3-upload input[type=file]", str(path))
            deadline = time.monotonic() + timeout
            while (state := page.evaluate("() => window.__bench"))["end"] is None:
                if time.monotonic() > deadline:
                    raise UploadFailed(f"no done event within {timeout:.0f} s")
                page.wait_for_timeout(POLL_SECONDS * 1000)
    finally:
        context.close()
    if state["error"]:
        raise UploadFailed(f"the uploader failed: {state['error']}")
    return {
        "seconds": (state["end"] - state["start"]) / 1000,
        "datasette_rss_growth_mib": datasette_rss.growth_mib,
        "renderer_rss_growth_mib": max(r.growth_mib for r in renderers),
        "file": state["file"],
    }


def read_back_sha256(store, bucket: str, key: str) -> tuple[str, float]:
    """Stream the stored object from the store; its SHA-256 and the seconds it took."""
    digest = hashlib.sha256()
    start = time.perf_counter()
    body = store.client().get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in body.iter_chunks(WRITE_CHUNK):
        digest.update(chunk)
    return digest.hexdigest(), time.perf_counter() - start


def stored_key(store, bucket: str, file_id: str) -> str:
    """The one object the upload wrote (its key holds the file id's hex)."""
    listing = store.client().list_objects_v2(Bucket=bucket, Prefix=f"uploads/{file_id.removeprefix('df-')}/")
    keys = [item["Key"] for item in listing.get("Contents", [])]
    if len(keys) != 1:
        raise UploadFailed(f"expected one object for {file_id}, found {keys}")
    return keys[0]


def markdown(args, result: dict, chromium_version: str) -> str:
    size = result["size"]
    rows = [
        ["size", f"{report.size_label(size)} ({size:,} bytes)"],
        ["store", args.store],
        ["upload time in the page", f"{result['seconds']:.1f} s ({size / MB / result['seconds']:.1f} MB/s)"],
        ["parts", str(result["parts"])],
        ["content_hash recorded", result["content_hash"] or "none (the store reports no checksum)"],
        ["Datasette peak RSS growth", f"{result['datasette_rss_growth_mib']:.1f} MiB"],
        ["largest renderer peak RSS growth", f"{result['renderer_rss_growth_mib']:.1f} MiB"],
        ["read-back SHA-256 equals the file's", "yes" if result["read_back_matches"] else "NO"],
        ["read-back time", f"{result['read_back_seconds']:.1f} s"],
        ["load average (1 min) before / after", f"{result['load_before']:.1f} / {result['load_after']:.1f}"],
    ]
    command = " ".join(["uv run python benchmarks/big_upload.py", *(argv_shown(args))])
    return "\n".join(
        [
            f"### One {report.size_label(size)} file, bundled uploader in Chromium to {args.store}",
            "",
            f"`{command}` · Chromium {chromium_version} · {os.cpu_count()} CPUs",
            "",
            report.table(["measure", "value"], rows),
            "",
        ]
    )


def argv_shown(args) -> list[str]:
    shown = ["--store", args.store, "--size-mib", str(args.size_mib)]
    if args.multipart_threshold is not None:
        shown += ["--multipart-threshold", str(args.multipart_threshold)]
    return shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["localstack", "ceph", "moto"], default="localstack")
    parser.add_argument(
        "--size-mib", type=int, default=10 * 1024, help="the file's size in MiB (default 10240)"
    )
    parser.add_argument(
        "--multipart-threshold", type=int, default=None, help="in MiB (default: the source's own default)"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds the upload may take")
    parser.add_argument("--out", default=str(HERE / "results"), help="where big-upload.md/json go")
    args = parser.parse_args(argv)
    size = args.size_mib * MiB
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bucket = f"big-{uuid.uuid4().hex[:12]}"
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="dfs3-big-upload-") as workdir:
        log(f"writing {report.size_label(size)} of random bytes")
        path, file_sha256 = make_file(Path(workdir), size)
        store = start_store(args.store)
        try:
            options = {"checksum": "sha256"}
            if args.multipart_threshold is not None:
                options["multipart_threshold"] = f"{args.multipart_threshold}MiB"
            datasette = DatasetteProcess(live_config(store.source_config(bucket, **options)))
            store.create_bucket(bucket, cors_origins=[datasette.url])
            datasette.start()
            try:
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    log(f"uploading to {args.store}")
                    upload = upload_in_browser(browser, datasette, path, args.timeout)
                    chromium_version = browser.version
                    browser.close()
            finally:
                datasette.stop()
            record = upload.pop("file")
            key = stored_key(store, bucket, record["id"])
            etag = store.client().head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
            log("reading the object back")
            stored_sha256, read_back_seconds = read_back_sha256(store, bucket, key)
            store.client().delete_object(Bucket=bucket, Key=key)
        finally:
            store.stop()

    result = {
        "size": size,
        **upload,
        "parts": int(etag.rsplit("-", 1)[1]) if "-" in etag else 1,
        "content_hash": record.get("content_hash"),
        "read_back_matches": stored_sha256 == file_sha256,
        "read_back_seconds": read_back_seconds,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    text = markdown(args, result, chromium_version)
    (out / "big-upload.md").write_text(text)
    (out / "big-upload.json").write_text(json.dumps(result, indent=2))
    print(text)
    if not result["read_back_matches"]:
        print(
            f"FAILED: the stored object's SHA-256 is {stored_sha256}, the file's {file_sha256}",
            file=sys.stderr,
        )
        return 1
    if store.reports_checksums and not result["content_hash"]:
        print("FAILED: no content_hash recorded on a store that reports checksums", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
