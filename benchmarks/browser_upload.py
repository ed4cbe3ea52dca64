"""Benchmark: the bundled uploader in Chromium, SHA-256 checksums on and off, beside boto3.

    uv run python benchmarks/browser_upload.py                    # 64 MiB, 256 MiB, 1 GiB, 3 rounds
    uv run python benchmarks/browser_upload.py --sizes 1,9 --multipart-threshold 5   # smoke run

One run starts its own `moto_server` process, one `datasette serve` with two
sources on the same bucket (`checksum: sha256` and `checksum: none`, each with
its default multipart_threshold unless --multipart-threshold is given) and
Chromium (CHROMIUM_PATH, default /usr/bin/chromium), all on loopback. For each
file size it uploads the same random file five ways, in an order that rotates
each round: the bundled uploader (page /-/files-s3/upload/{source}) with
checksums on and off, and boto3 `upload_file` with ChecksumAlgorithm=SHA256,
with no checksums, and with SHA256 in the uploader's shape (its part size, 4
parts at a time). Each upload measures

- its time, in the page from the file input's change event to the uploader's
  done event (prepare/create and complete included; Playwright's polling not);
- Datasette's and moto's CPU time (utime + stime), the client's (every
  Chromium process, or this process's boto3 threads), and Datasette's peak RSS;
- the page's JS heap (CDP Performance.getMetrics JSHeapUsedSize, sampled) and
  the largest peak-RSS growth among Chromium's renderers (VmHWM, reset before
  the upload), which also holds array buffers and any worker.

Every checksum-on browser upload must end with a content_hash and every
checksum-off one without; anything else fails the run. Results go to
OUT/browser-upload.md (also printed) and OUT/browser-upload.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from playwright.sync_api import sync_playwright

from benchmarks import report
from benchmarks.memory import PeakRSS, chromium_processes, chromium_renderer_pids, cpu_seconds
from datasette_files_s3.config import parse_source_config
from datasette_files_s3.multipart import preferred_part_size
from tests.live_servers import CHROMIUM, CHROMIUM_ARGS, DatasetteProcess, live_config
from tests.s3_servers import MotoServer

HERE = Path(__file__).resolve().parent

MiB = 1024**2
MB = 1000**2
BUCKET = "bench"
PATHS = [
    ("browser_sha256", "browser, `checksum: sha256`"),
    ("browser_none", "browser, `checksum: none`"),
    ("boto3_sha256", "boto3 `upload_file`, ChecksumAlgorithm=SHA256"),
    ("boto3_none", "boto3 `upload_file`, no checksums"),
    ("boto3_shaped", "boto3 `upload_file`, SHA256, the uploader's part size and 4 parts at a time"),
]
SOURCES = {"browser_sha256": "s3sha256", "browser_none": "s3none"}
CHECKSUM = {"browser_sha256": "sha256", "browser_none": "none"}
# The ratios the issue sets targets for: (label, numerator, denominator).
RATIOS = [
    ("browser: checksums on / off", "browser_sha256", "browser_none"),
    ("SHA-256: browser / boto3", "browser_sha256", "boto3_sha256"),
    ("no checksums: browser / boto3", "browser_none", "boto3_none"),
]
# Not a target: how much of the gap to boto3 is the shape of the upload.
SHAPE_RATIO = ("SHA-256: browser / boto3 in the uploader's shape", "browser_sha256", "boto3_shaped")
TARGET = 0.9
SAMPLE_SECONDS = 0.25
UPLOAD_TIMEOUT = 1800

# Installed in the page before a file is chosen. A capture listener on the
# document runs before the uploader's own change handler.
TIMER = """() => {
  window.__bench = { start: null, end: null, file: null, error: null };
  document.addEventListener("change", () => { window.__bench.start = performance.now(); }, { capture: true });
  document.addEventListener("files-s3-upload-done", (event) => {
    window.__bench.end = performance.now();
    window.__bench.file = event.detail.file;
  });
  document.addEventListener("files-s3-upload-error", (event) => {
    window.__bench.end = performance.now();
    window.__bench.error = event.detail.error.message || String(event.detail.error);
  });
}"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Upload:
    """One upload's measurements; the resource fields stay None where they do not apply."""

    seconds: float
    load_average: float
    datasette_cpu: float | None = None
    datasette_rss_growth_mib: float | None = None
    moto_cpu: float | None = None
    # The uploading client's CPU: every Chromium process for the browser, this
    # process (boto3's threads) for boto3. Both share the 2 cores with moto.
    client_cpu: float | None = None
    js_heap_peak_mib: float | None = None
    renderer_rss_growth_mib: float | None = None
    workers: int | None = None
    content_hash: str | None = None


class UploadFailed(RuntimeError):
    """An upload did not end as it should; the message says how."""


def make_file(directory: Path, size: int) -> Path:
    """A file of random bytes (incompressible), written 16 MiB at a time."""
    path = directory / f"bench-{size}.bin"
    with open(path, "wb") as out:
        for start in range(0, size, 16 * MiB):
            out.write(os.urandom(min(16 * MiB, size - start)))
    return path


def js_heap_used(cdp) -> int:
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return next(int(m["value"]) for m in metrics if m["name"] == "JSHeapUsedSize")


class Bench:
    """The servers and browser of one run, and the uploads measured against them."""

    def __init__(self, moto: MotoServer, datasette: DatasetteProcess, browser, threshold: int):
        self.moto = moto
        self.datasette = datasette
        self.browser = browser
        self.s3 = {
            "boto3_sha256": moto.client(),
            # Like the plugin's own client: checksums only where S3 requires them.
            "boto3_none": moto.client(
                request_checksum_calculation="when_required", response_checksum_validation="when_required"
            ),
        }
        self.s3["boto3_shaped"] = self.s3["boto3_sha256"]
        # The bundled uploader's shape: the plugin's part size, 4 parts in flight
        # (its RequestQueue), no threshold of boto3's own below the plugin's.
        part_size = preferred_part_size(threshold)
        self.transfer = {
            "boto3_shaped": TransferConfig(
                multipart_threshold=threshold + 1, multipart_chunksize=part_size, max_concurrency=4
            )
        }
        self.cookie = datasette.cookie_for("bench")

    def upload(self, key: str, file: Path) -> Upload:
        """Upload `file` by path `key`, then empty the bucket so moto's memory stays flat."""
        with contextlib.ExitStack() as stack:
            moto_before = cpu_seconds(self.moto.process.pid)
            stack.callback(self.empty_bucket)
            if key.startswith("browser"):
                result = self.browser_upload(SOURCES[key], file, expect_hash=key == "browser_sha256")
            else:
                result = self.boto3_upload(key, file)
            result.moto_cpu = cpu_seconds(self.moto.process.pid) - moto_before
        return result

    def boto3_upload(self, key: str, file: Path) -> Upload:
        extra = None if key == "boto3_none" else {"ChecksumAlgorithm": "SHA256"}
        cpu_before = cpu_seconds(os.getpid())
        start = time.perf_counter()
        self.s3[key].upload_file(
            str(file), BUCKET, f"{key}/{uuid.uuid4().hex}.bin", ExtraArgs=extra, Config=self.transfer.get(key)
        )
        return Upload(
            seconds=time.perf_counter() - start,
            load_average=os.getloadavg()[0],
            client_cpu=cpu_seconds(os.getpid()) - cpu_before,
        )

    def browser_upload(self, source: str, file: Path, expect_hash: bool) -> Upload:
        """Choose `file` in a fresh page of the uploader and wait for its done event."""
        context = self.browser.new_context(base_url=self.datasette.url)
        context.add_cookies([{"name": "ds_actor", "value": self.cookie, "url": self.datasette.url}])
        try:
            page = context.new_page()
            workers = []
            page.on("worker", lambda worker: workers.append(worker.url))
            page.goto(f"/-/files-s3/upload/{source}")
            page.evaluate(TIMER)
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            datasette_pid = self.datasette.process.pid
            with contextlib.ExitStack() as stack:
                renderers = [
                    stack.enter_context(PeakRSS(pid, interval=0.05))
                    for pid in chromium_renderer_pids(self.browser)
                ]
                datasette_rss = stack.enter_context(PeakRSS(datasette_pid, interval=0.05))
                cpu_before = cpu_seconds(datasette_pid)
                chromium_pids = [p["id"] for p in chromium_processes(self.browser)]
                chromium_before = {pid: cpu_seconds(pid) for pid in chromium_pids}
                heap_peak = js_heap_used(cdp)
                page.set_input_files("datasette-files-s3-upload input[type=file]", str(file))
                deadline = time.monotonic() + UPLOAD_TIMEOUT
                while (state := page.evaluate("() => window.__bench"))["end"] is None:
                    if time.monotonic() > deadline:
                        raise UploadFailed(f"{source}: no done event within {UPLOAD_TIMEOUT} s")
                    heap_peak = max(heap_peak, js_heap_used(cdp))
                    page.wait_for_timeout(SAMPLE_SECONDS * 1000)
                heap_peak = max(heap_peak, js_heap_used(cdp))
                datasette_cpu = cpu_seconds(datasette_pid) - cpu_before
                client_cpu = sum(cpu_seconds(pid) - before for pid, before in chromium_before.items())
        finally:
            context.close()
        if state["error"]:
            raise UploadFailed(f"{source}: the uploader failed: {state['error']}")
        content_hash = state["file"].get("content_hash")
        if bool(content_hash) != expect_hash:
            raise UploadFailed(
                f"{source}: content_hash is {content_hash!r}, expected {'one' if expect_hash else 'none'}"
            )
        return Upload(
            seconds=(state["end"] - state["start"]) / 1000,
            load_average=os.getloadavg()[0],
            datasette_cpu=datasette_cpu,
            datasette_rss_growth_mib=datasette_rss.growth_mib,
            client_cpu=client_cpu,
            js_heap_peak_mib=heap_peak / MiB,
            renderer_rss_growth_mib=max(r.growth_mib for r in renderers),
            workers=len(workers),
            content_hash=content_hash,
        )

    def empty_bucket(self) -> None:
        s3 = self.s3["boto3_none"]
        for listing in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in listing.get("Contents", []):
                s3.delete_object(Bucket=BUCKET, Key=item["Key"])

    def measure_size(self, file: Path, repeats: int) -> dict:
        """{path: [Upload, ...]}: each path `repeats` times, the order rotating every round."""
        keys = [key for key, _ in PATHS]
        uploads = {key: [] for key in keys}
        for round_number in range(repeats):
            shift = round_number % len(keys)
            for key in keys[shift:] + keys[:shift]:
                result = self.upload(key, file)
                uploads[key].append(result)
                log(
                    f"{key:15} {report.size_label(file.stat().st_size):>8}: "
                    f"{file.stat().st_size / MB / result.seconds:7.1f} MB/s (load {result.load_average:.1f})"
                )
        return uploads


def summarize(uploads: list[Upload], size: int) -> dict:
    """The median time's MB/s, and the worst of each resource figure across repeats."""
    seconds = statistics.median(u.seconds for u in uploads)
    summary = {"repeats": len(uploads), "seconds": seconds, "mbps": size / MB / seconds}
    for field in (
        "load_average",
        "datasette_cpu",
        "datasette_rss_growth_mib",
        "moto_cpu",
        "client_cpu",
        "js_heap_peak_mib",
        "renderer_rss_growth_mib",
        "workers",
    ):
        values = [getattr(u, field) for u in uploads if getattr(u, field) is not None]
        summary[field] = max(values) if values else None
    summary["content_hash"] = uploads[-1].content_hash
    return summary


def ratio(results: dict, size: int, top: str, bottom: str) -> float:
    return results[top][size]["mbps"] / results[bottom][size]["mbps"]


def ratio_table(results: dict, sizes: list[int]) -> str:
    rows = []
    for label, top, bottom in RATIOS:
        cells = []
        for size in sizes:
            value = ratio(results, size, top, bottom)
            cells.append(f"{value:.2f} ({'met' if value >= TARGET else 'NOT met'})")
        rows.append([label, *cells])
    label, top, bottom = SHAPE_RATIO
    rows.append([f"{label} (no target)", *(f"{ratio(results, s, top, bottom):.2f}" for s in sizes)])
    return report.table([f"ratio (target >= {TARGET})", *map(report.size_label, sizes)], rows)


def resource_table(results: dict, sizes: list[int]) -> str:
    rows = []
    for key, label in PATHS:
        for size in sizes:
            e = results[key][size]
            rows.append(
                [
                    label,
                    report.size_label(size),
                    report.fmt(e["datasette_cpu"], 2, " s"),
                    report.fmt(e["datasette_rss_growth_mib"], 1, " MiB"),
                    report.fmt(e["moto_cpu"], 2, " s"),
                    report.fmt(e["client_cpu"], 2, " s"),
                    report.fmt(e["js_heap_peak_mib"], 1, " MiB"),
                    report.fmt(e["renderer_rss_growth_mib"], 1, " MiB"),
                    "—" if e["workers"] is None else str(e["workers"]),
                ]
            )
    header = [
        "path",
        "size",
        "Datasette CPU",
        "Datasette peak RSS growth",
        "moto CPU",
        "client CPU (Chromium's processes / boto3's)",
        "page JS heap peak",
        "renderer peak RSS growth",
        "workers",
    ]
    return report.table(header, rows)


def source_threshold(key: str, given_mib: int | None) -> int:
    """The multipart_threshold a browser path's source runs with: the one given,
    or the plugin's own default for that source's checksum setting."""
    options = {"bucket": BUCKET, "checksum": CHECKSUM[key]}
    if given_mib is not None:
        options["multipart_threshold"] = f"{given_mib}MiB"
    return parse_source_config("bench", options).multipart_threshold


def memory_lines(results: dict, sizes: list[int], thresholds: dict[str, int]) -> list[str]:
    """Whether the browser held a file in memory: each renderer's peak growth beside the file's size."""
    lines = []
    for key in SOURCES:
        threshold = thresholds[key]
        part_size = preferred_part_size(threshold)
        for size in sizes:
            growth = results[key][size]["renderer_rss_growth_mib"]
            kind = (
                f"multipart, {part_size // MiB} MiB parts, 4 in flight" if size > threshold else "single POST"
            )
            lines.append(
                f"- {key}, {report.size_label(size)} ({kind}): renderer peak RSS growth {growth:.0f} MiB"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64,256,1024", help="file sizes in MiB (default 64,256,1024)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds per size, the order rotating (default 3)"
    )
    parser.add_argument(
        "--multipart-threshold",
        type=int,
        default=None,
        help="both sources' multipart_threshold in MiB (default: each source's own default)",
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="where browser-upload.md/json go")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) * MiB for s in args.sizes.split(",")})
    thresholds = {key: source_threshold(key, args.multipart_threshold) for key in SOURCES}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    load_before = os.getloadavg()
    results: dict = {key: {} for key, _ in PATHS}
    workdir = Path(tempfile.mkdtemp(prefix="dfs3-browser-bench-"))
    # moto answers presigned POSTs with CORS headers only under its global rule (see MotoServer).
    moto = MotoServer(global_cors=True).start()
    sources = {
        source: {
            "storage": "s3",
            "config": moto.source_config(
                BUCKET,
                prefix=source,
                checksum=CHECKSUM[key],
                multipart_threshold=thresholds[key],
            ),
        }
        for key, source in SOURCES.items()
    }
    config = live_config({})
    config["plugins"]["datasette-files"]["sources"] = sources
    datasette = DatasetteProcess(config)
    try:
        moto.create_bucket(BUCKET, cors_origins=[datasette.url])
        datasette.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            # boto3 "in the uploader's shape" takes the checksum-on source's parts.
            bench = Bench(moto, datasette, browser, thresholds["browser_sha256"])
            # Untimed: imports, connection pools, the first worker or WebCrypto call, per path.
            warm = make_file(workdir, 64 * 1024)
            for key, _ in PATHS:
                bench.upload(key, warm)
            # Untimed: one upload of the largest size. moto assembles a multipart
            # object in memory, and its first 1 GiB complete took 5.8 s where later
            # ones took 3.2 to 4.5 s (it grows its heap once): whichever path went
            # first paid for that. The file is kept for that size's own rounds.
            largest = make_file(workdir, max(sizes))
            bench.upload("boto3_shaped", largest)
            for size in sizes:
                file = largest if size == max(sizes) else make_file(workdir, size)
                for key, uploads in bench.measure_size(file, args.repeats).items():
                    results[key][size] = summarize(uploads, size)
                file.unlink()
            chromium_version = browser.version
            browser.close()
    finally:
        datasette.stop()
        moto.stop()
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()

    command = "uv run python benchmarks/browser_upload.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    markdown = "\n".join(
        [
            f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `{command}` in {elapsed / 60:.1f} minutes, "
            f"Chromium {chromium_version}, {os.cpu_count()} CPUs, multipart_threshold "
            + ", ".join(f"{thresholds[key] // MiB} MiB ({SOURCES[key]})" for key in SOURCES)
            + f", {args.repeats} round(s) per size.",
            "",
            "Load average (1, 5, 15 min) before the run: "
            + ", ".join(f"{x:.2f}" for x in load_before)
            + "; after: "
            + ", ".join(f"{x:.2f}" for x in load_after)
            + ".",
            "",
            "### Throughput (MB/s = 10^6 bytes/s, whole upload including Datasette's steps; median of rounds)",
            "",
            report.throughput_table(results, sizes, PATHS),
            "",
            "### Ratios and the issue's targets",
            "",
            ratio_table(results, sizes),
            "",
            "### Resources during each upload (the worst round)",
            "",
            resource_table(results, sizes),
            "",
            "### Did the browser hold the file in memory?",
            "",
            *memory_lines(results, sizes, thresholds),
        ]
    )
    (out / "browser-upload.md").write_text(markdown + "\n")
    (out / "browser-upload.json").write_text(
        json.dumps(
            {
                "command": command,
                "chromium": chromium_version,
                "multipart_threshold": thresholds,
                "load_average_before": load_before,
                "load_average_after": load_after,
                "elapsed_seconds": elapsed,
                "uploads": results,
            },
            indent=2,
        )
    )
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
