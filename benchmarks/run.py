"""Benchmark: our upload paths against Datasette's proxy, datasette-files-s3 0.1a2 and plain boto3.

    uv run --group benchmark python benchmarks/run.py            # 1 MiB .. 1 GiB
    uv run --group benchmark python benchmarks/run.py --sizes 1,64,256

One run starts its own moto_server process, our Datasette, and 0.1a2's
Datasette from a virtualenv of its own (made with uv on first use), all on
loopback, then measures each path in turn on the same files. Results go to
benchmarks/results/: latest.md (also printed), latest.json and throughput.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

import clients
import httpx
import metadata
import report
from memory import PeakRSS
from multipart_vs_boto3 import UploadFailed as MultipartFailed
from multipart_vs_boto3 import upload_multipart_via_datasette

from tests.live_servers import DatasetteProcess, live_config
from tests.s3_servers import MotoServer

HERE = Path(__file__).resolve().parent

MiB = 1024**2
MB = 1000**2
OLD_RELEASE = "datasette-files-s3==0.1a2"
BUCKET = "bench"
PATHS = [
    ("direct", "(a) ours: direct presigned POST"),
    ("multipart", "(b) ours: multipart"),
    ("proxy", "(c) ours: proxy through Datasette"),
    ("old", "(d) 0.1a2: proxy through Datasette"),
    ("raw_post", "(e) presigned POST + HEAD, no Datasette"),
    ("boto3_put", "(e) boto3 put_object"),
    ("boto3_upload_file", "(e) boto3 upload_file"),
]
METADATA_LEVELS = {1: 200, 16: 800, 64: 1280}
DOWNLOAD_LEVELS = {1: 500, 16: 2000}
# The floor at every concurrency prepare and complete are measured at beyond 1.
FLOOR_LEVELS = {1: 500, 16: 2000, 64: 2000}
PREPARE_FLOOR_TARGET = 0.5
FLOOR = "floor: `GET /-/actor.json`, no plugin code"
PERMISSION_FLOOR = "floor: `GET /-/settings.json` signed in: one `datasette.allowed` check, no plugin code"
S3_HEAD = "floor: boto3 `head_object` to moto, no Datasette (complete pays one)"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def old_release_datasette(venv_dir: Path) -> str:
    """`datasette` from a virtualenv holding only the published 0.1a2, made on first use."""
    executable = venv_dir / "bin" / "datasette"
    marker = venv_dir / ".complete"
    if not marker.exists():
        log(f"creating {venv_dir} with {OLD_RELEASE}")
        subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(venv_dir)], check=True)
        subprocess.run(
            ["uv", "pip", "install", "-q", "--python", str(venv_dir / "bin" / "python"), OLD_RELEASE],
            check=True,
        )
        marker.write_text(OLD_RELEASE)
    return str(executable)


def package_version(venv_dir: Path, package: str) -> str:
    python = venv_dir / "bin" / "python"
    command = f"from importlib.metadata import version; print(version({package!r}))"
    return subprocess.run([str(python), "-c", command], capture_output=True, text=True).stdout.strip()


def make_file(directory: Path, size: int) -> Path:
    """A file of random bytes (incompressible, so no layer can cheat)."""
    path = directory / f"bench-{size}.bin"
    chunk = 8 * MiB
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(chunk, left))
            out.write(block)
            left -= len(block)
    return path


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "datasette": version("datasette"),
        "datasette-files": version("datasette-files"),
        "datasette-files-s3": f"{version('datasette-files-s3')} (git {commit})",
        "boto3": version("boto3"),
        "moto": version("moto"),
        "httpx (upload client)": version("httpx"),
        "aiohttp (metadata load)": version("aiohttp"),
    }


class Bench:
    """The servers of one run and the measurements taken against them."""

    def __init__(self, args):
        self.args = args
        self.results: dict = {key: {} for key, _ in PATHS}
        self.s3 = None
        self.ours: DatasetteProcess | None = None
        self.old: DatasetteProcess | None = None
        self.old_error: str | None = None

    # --- servers ---------------------------------------------------------------

    def start(self, moto: MotoServer) -> None:
        moto.create_bucket(BUCKET)
        self.moto = moto
        self.s3 = moto.client()
        self.ours = DatasetteProcess(
            {
                "plugins": {
                    "datasette-files": {
                        "sources": {
                            "s3files": {
                                "storage": "s3",
                                # The metadata load prepares a whole level (up to 1,280
                                # uploads, one actor) before completing any: above the
                                # default per-actor limit of 100 pending, every later
                                # prepare would be a 429, timed as if it were a prepare.
                                "config": moto.source_config(
                                    BUCKET, prefix="direct", max_pending_uploads=max(METADATA_LEVELS.values())
                                ),
                            },
                            "s3proxy": {
                                "storage": "s3",
                                "config": moto.source_config(BUCKET, prefix="proxy", direct_uploads=False),
                            },
                        }
                    }
                },
                "permissions": live_config({})["permissions"],
            }
        ).start()
        self.ours_client = clients.datasette_client(self.ours.url, self.ours.cookie_for())
        self.http = httpx.Client(timeout=clients.TIMEOUT)
        if self.args.skip_old:
            self.old_error = "skipped (--skip-old)"
            return
        try:
            executable = old_release_datasette(Path(self.args.old_venv))
            self.old_versions = {
                p: package_version(Path(self.args.old_venv), p)
                for p in ("datasette-files-s3", "datasette", "datasette-files", "aioboto3")
            }
            config = moto.source_config(BUCKET, prefix="old")
            self.old = DatasetteProcess(live_config(config, source="s3old"), executable=executable).start()
            self.old_client = clients.datasette_client(self.old.url, self.old.cookie_for())
        except Exception as ex:  # reported in the output, never replaced by made-up numbers
            self.old_error = f"could not run {OLD_RELEASE}: {type(ex).__name__}: {ex}"
            log(self.old_error)

    def stop(self) -> None:
        for server in (self.ours, self.old):
            if server:
                server.stop()

    # --- uploads ---------------------------------------------------------------

    def one_upload(self, key: str, file: Path):
        """(Outcome, Datasette peak RSS growth in MiB or None) for one upload by one path."""
        size = file.stat().st_size
        if key == "direct":
            run, server = (
                (lambda: clients.direct_post(self.ours_client, self.http, "s3files", file)),
                self.ours,
            )
        elif key == "proxy":
            run, server = (lambda: clients.proxy_upload(self.ours_client, "s3proxy", file)), self.ours
        elif key == "old":
            if self.old is None:
                return clients.Outcome(None, self.old_error), None
            run, server = (lambda: clients.proxy_upload(self.old_client, "s3old", file)), self.old
        elif key == "multipart":
            run, server = (lambda: self.run_multipart(file)), self.ours
        else:
            object_key = f"boto3/{uuid.uuid4().hex}/{file.name}"
            server = None
            if key == "raw_post":
                run = lambda: clients.raw_presigned_post(self.s3, self.http, BUCKET, object_key, file)  # noqa: E731
            elif key == "boto3_put":
                run = lambda: clients.boto3_put_object(self.s3, BUCKET, object_key, file)  # noqa: E731
            else:
                run = lambda: clients.boto3_upload_file(self.s3, BUCKET, object_key, file)  # noqa: E731
        if server is None:
            outcome = run()
            growth = None
        else:
            with PeakRSS(server.process.pid) as peak:
                outcome = run()
            growth = peak.growth_mib
        if outcome.key:
            # Keep moto's memory and temp files down between uploads.
            self.s3.delete_object(
                Bucket=BUCKET,
                Key=outcome.key
                if key in ("raw_post", "boto3_put", "boto3_upload_file")
                else self.full_key(key, outcome.key),
            )
        log(
            f"{key:18} {size / MiB:8.2f} MiB: "
            + (f"{size / MB / outcome.seconds:7.1f} MB/s" if outcome.ok else outcome.error)
            + (f", Datasette +{growth:.1f} MiB" if growth is not None else "")
        )
        return outcome, growth

    def full_key(self, key: str, returned: str) -> str:
        prefix = {"direct": "", "multipart": "", "proxy": "proxy/", "old": "old/"}[key]
        return returned if returned.startswith(("direct/", "proxy/", "old/")) else prefix + returned

    def run_multipart(self, file: Path) -> clients.Outcome:
        """(b): multipart_vs_boto3's client: create, sign, PUT parts as the bundled uploader does, complete."""
        start = time.perf_counter()
        try:
            registered = upload_multipart_via_datasette(
                self.ours.url, self.ours.cookie_for(), file, concurrency=self.args.multipart_workers
            )
        except MultipartFailed as ex:
            return clients.Outcome(None, str(ex)[:200])
        seconds = time.perf_counter() - start
        path = self.ours_client.get(f"/-/files/{registered['id']}.json").json()["path"]
        return clients.Outcome(seconds, key="direct/" + path)

    def measure_size(self, file: Path, repeats: int) -> None:
        """Each path `repeats` times; the order rotates every round so no path is always first."""
        size = file.stat().st_size
        # Untimed: moto's first object of a new size costs more (its memory and
        # temp files grow); pay that once here, not in whichever path runs first.
        clients.boto3_put_object(self.s3, BUCKET, "warm-up", file)
        self.s3.delete_object(Bucket=BUCKET, Key="warm-up")
        keys = [key for key, _ in PATHS]
        times = {key: [] for key in keys}
        growths = {key: [] for key in keys}
        errors: dict[str, str] = {}
        for round_number in range(repeats):
            shift = round_number % len(keys)
            for key in keys[shift:] + keys[:shift]:
                if key in errors:
                    continue
                outcome, growth = self.one_upload(key, file)
                if growth is not None:
                    growths[key].append(growth)
                if outcome.ok:
                    times[key].append(outcome.seconds)
                else:
                    errors[key] = outcome.error
        for key in keys:
            entry = {
                "repeats": len(times[key]),
                "rss_growth_mib": max(growths[key]) if growths[key] else None,
            }
            if key in errors:
                entry["error"] = errors[key]
            else:
                seconds = statistics.median(times[key])
                entry.update(seconds=seconds, mbps=size / MB / seconds)
            self.results[key][size] = entry

    def add_ratios(self, sizes: list[int]) -> None:
        """Each path's MB/s as a fraction of the faster boto3 call at that size."""
        for size in sizes:
            limit = max(
                (self.results[k].get(size, {}).get("mbps") or 0) for k in ("boto3_put", "boto3_upload_file")
            )
            for key, _ in PATHS:
                entry = self.results[key].get(size)
                if entry and entry.get("mbps") and limit:
                    entry["ratio"] = entry["mbps"] / limit

    # --- metadata path ---------------------------------------------------------

    def measure_metadata(self) -> tuple[dict, dict]:
        servers = {"ours (direct)": (self.ours, "s3files", True)}
        if self.old:
            servers["0.1a2"] = (self.old, "s3old", False)
        meta, downloads = {}, {}
        for name, (server, source, direct) in servers.items():
            meta[name], downloads[name] = {}, {}
            cookie = server.cookie_for()
            pid = server.process.pid
            # Warm up: imports, connection pools, the credentials cache.
            asyncio.run(metadata.metadata_level(server.url, cookie, source, 4, 20, direct))
            file_ids: list[str] = []
            for clients_count, count in METADATA_LEVELS.items():
                try:
                    prepare, complete, ids = asyncio.run(
                        metadata.metadata_level(server.url, cookie, source, clients_count, count, direct, pid)
                    )
                    meta[name][clients_count] = {"prepare": asdict(prepare), "complete": asdict(complete)}
                    file_ids.extend(ids)
                    log(
                        f"metadata {name} x{clients_count}: prepare p50 {prepare.p50_ms:.1f} ms, complete p50 {complete.p50_ms:.1f} ms"
                    )
                except Exception as ex:
                    meta[name][clients_count] = {"error": f"{type(ex).__name__}: {ex}"[:200]}
            for clients_count, count in DOWNLOAD_LEVELS.items():
                if not file_ids:
                    downloads[name][clients_count] = {"error": "no files registered"}
                    continue
                level = asyncio.run(metadata.download_level(server.url, file_ids, clients_count, count, pid))
                downloads[name][clients_count] = asdict(level)
                log(f"download {name} x{clients_count}: p50 {level.p50_ms:.1f} ms")
        # The same load on an endpoint no plugin touches: what any request costs
        # here; and on one that makes exactly the one permission check prepare
        # and complete make before any work of ours.
        downloads[FLOOR], downloads[PERMISSION_FLOOR], downloads[S3_HEAD] = {}, {}, {}
        self.s3.put_object(Bucket=BUCKET, Key="head-probe", Body=metadata.SMALL_BODY)
        # As many pooled connections as the plugin's own client has (32), not boto3's 10.
        head_client = self.moto.client(max_pool_connections=32, request_checksum_calculation="when_required")
        url, pid, cookie = self.ours.url, self.ours.process.pid, self.ours.cookie_for()
        for clients_count, count in FLOOR_LEVELS.items():
            level = asyncio.run(metadata.floor_level(url, clients_count, count, pid))
            downloads[FLOOR][clients_count] = asdict(level)
            checked = asyncio.run(metadata.permission_floor_level(url, cookie, clients_count, count, pid))
            downloads[PERMISSION_FLOOR][clients_count] = asdict(checked)
            head = metadata.s3_head_level(head_client, BUCKET, "head-probe", clients_count, count)
            downloads[S3_HEAD][clients_count] = asdict(head)
            log(
                f"floor x{clients_count}: p50 {level.p50_ms:.1f} ms; one permission check p50 "
                f"{checked.p50_ms:.1f} ms; S3 HEAD p50 {head.p50_ms:.1f} ms"
            )
        return meta, downloads


def targets(results: dict, sizes: list[int], meta: dict, downloads: dict) -> list[str]:
    """The issue's targets, each checked against this run's numbers."""
    lines = []

    def ratio(a, b, size):
        x, y = results[a].get(size, {}).get("mbps"), results[b].get(size, {}).get("mbps")
        return x / y if x and y else None

    for size in sizes:
        limit_key = max(
            ("boto3_put", "boto3_upload_file"), key=lambda k: results[k].get(size, {}).get("mbps") or 0
        )
        r = ratio("direct", limit_key, size)
        lines.append(
            f"- {report.size_label(size)}: direct POST / boto3 limit ({limit_key}) = {report.fmt(r, 2)} (target >= 0.95): {'met' if r and r >= 0.95 else 'NOT met'}"
        )
        r = ratio("direct", "raw_post", size)
        lines.append(
            f"- {report.size_label(size)}: direct POST / the same POST + HEAD without Datasette = {report.fmt(r, 2)} "
            "(Datasette's share of the cost; against moto a POST is slower than a PUT)"
        )
        r = ratio("multipart", "boto3_upload_file", size)
        lines.append(
            f"- {report.size_label(size)}: multipart / boto3 upload_file = {report.fmt(r, 2)} (target >= 0.9): {'met' if r and r >= 0.9 else 'NOT met'}"
        )
    for key in ("direct", "proxy", "multipart"):
        growth = [
            e.get("rss_growth_mib") for e in results[key].values() if e.get("rss_growth_mib") is not None
        ]
        if growth:
            biggest = max(results[key])
            at_biggest = results[key][biggest].get("rss_growth_mib")
            lines.append(
                f"- Datasette RSS growth, {key}: {min(growth):.1f} to {max(growth):.1f} MiB across sizes; at {report.size_label(biggest)} +{at_biggest:.1f} MiB (target < 64): {'met' if at_biggest is not None and at_biggest < 64 else 'NOT met'}"
            )
    ours = meta.get("ours (direct)", {}).get(16, {})
    if "prepare" in ours:
        p50 = ours["prepare"]["p50_ms"]
        lines.append(
            f"- prepare p50 at 16 clients: {p50:.1f} ms (target < 5 ms): {'met' if p50 < 5 else 'NOT met'}"
        )
    for clients_count in (16, 64):
        prepare = meta.get("ours (direct)", {}).get(clients_count, {}).get("prepare")
        floor = downloads.get(FLOOR, {}).get(clients_count)
        if prepare and floor and floor["rps"]:
            share = prepare["rps"] / floor["rps"]
            lines.append(
                f"- prepare req/s / the floor's at {clients_count} clients: {share:.2f} "
                f"(target >= {PREPARE_FLOOR_TARGET}): {'met' if share >= PREPARE_FLOOR_TARGET else 'NOT met'}"
            )
        checked = downloads.get(PERMISSION_FLOOR, {}).get(clients_count)
        if prepare and checked and checked["rps"]:
            lines.append(
                f"- prepare req/s / one permission check's (`/-/settings.json`) at {clients_count} clients: "
                f"{prepare['rps'] / checked['rps']:.2f}" + cpu_shares(prepare, floor, checked)
            )
    d = downloads.get("ours (direct)", {}).get(16, {})
    if "p50_ms" in d:
        lines.append(
            f"- download redirect p50 at 16 clients: {d['p50_ms']:.1f} ms (target < 5 ms): {'met' if d['p50_ms'] < 5 else 'NOT met'}"
        )
    return lines


def cpu_shares(prepare: dict, floor: dict | None, checked: dict) -> str:
    """Where prepare's CPU goes, from Datasette's CPU per request: what any request
    costs (the floor), what a signed-in actor and the one permission check add,
    and what is left for ours."""
    if any(level is None or level.get("cpu_ms") is None for level in (prepare, floor, checked)):
        return ""
    return (
        f"; Datasette CPU per request: prepare {prepare['cpu_ms']:.2f} ms = any request "
        f"{floor['cpu_ms']:.2f} + signed-in actor and permission check {checked['cpu_ms'] - floor['cpu_ms']:.2f} "
        f"+ the rest {prepare['cpu_ms'] - checked['cpu_ms']:.2f}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,64,256,1024", help="file sizes in MiB (default 1,64,256,1024)")
    parser.add_argument("--repeats", default="1:5,64:3,256:3,1024:2", help="runs per size, SIZE:N,...")
    parser.add_argument(
        "--multipart-workers", type=int, default=4, help="parts sent at once (our browser uploader sends 4)"
    )
    parser.add_argument("--skip-old", action="store_true", help=f"do not install and run {OLD_RELEASE}")
    parser.add_argument("--skip-metadata", action="store_true", help="only the upload throughput")
    parser.add_argument(
        "--old-venv", default=str(Path(tempfile.gettempdir()) / "datasette-files-s3-0.1a2-venv")
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="where latest.md/json/png go")
    args = parser.parse_args(argv)
    sizes = [int(s) * MiB for s in args.sizes.split(",")]
    repeats = {int(k) * MiB: int(v) for k, v in (p.split(":") for p in args.repeats.split(","))}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    bench = Bench(args)
    moto = MotoServer().start()
    workdir = Path(tempfile.mkdtemp(prefix="dfs3-bench-"))
    try:
        bench.start(moto)
        # Warm up every path (imports, connection pools, credentials): not measured.
        warm = make_file(workdir, 64 * 1024)
        for key, _ in PATHS:
            bench.one_upload(key, warm)
        for size in sizes:
            file = make_file(workdir, size)
            log(f"--- {report.size_label(size)}")
            bench.measure_size(file, repeats.get(size, 1))
            file.unlink()
        bench.add_ratios(sizes)
        meta, downloads = ({}, {}) if args.skip_metadata else bench.measure_metadata()
    finally:
        bench.stop()
        moto.stop()
    elapsed = time.monotonic() - started

    info = machine()
    old_line = ", ".join(f"{k} {v}" for k, v in bench.old_versions.items()) if bench.old else bench.old_error
    title = f"Upload throughput on loopback, moto_server {info['moto']}; {info['cores']} cores, {info['cpu']}"
    command = "uv run --group benchmark python benchmarks/run.py" + (
        " " + " ".join(argv or sys.argv[1:]) if (argv or sys.argv[1:]) else ""
    )
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `{command}` in {elapsed / 60:.1f} minutes.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        f"0.1a2 run from its own virtualenv: {old_line}",
        "",
        "### Upload throughput (MB/s = 10^6 bytes/s, whole upload including prepare and complete; "
        "ratio to the faster of boto3 put_object / upload_file at that size)",
        "",
        report.throughput_table(bench.results, sizes, PATHS),
        "",
        "### Datasette's peak RSS above idle during each upload (VmHWM, reset before each upload)",
        "",
        report.memory_table(bench.results, sizes, [p for p in PATHS if not p[0].startswith("boto3")]),
    ]
    if meta:
        lines += [
            "",
            "### Metadata path: prepare and complete (the bytes themselves untimed), by concurrent clients",
            "",
            report.metadata_table(meta),
            "",
            "### Download redirect (`GET /-/files/{id}/download`, redirect not followed), and three floors",
            "",
            report.download_table(downloads),
        ]
    lines += ["", "### Targets", ""] + targets(bench.results, sizes, meta, downloads)
    markdown = "\n".join(lines) + "\n"
    (out / "latest.md").write_text(markdown)
    (out / "latest.json").write_text(
        json.dumps(
            {
                "machine": info,
                "old": old_line,
                "elapsed_seconds": elapsed,
                "uploads": bench.results,
                "metadata": meta,
                "downloads": downloads,
            },
            indent=2,
            default=str,
        )
    )
    if report.chart(bench.results, sizes, PATHS, out / "throughput.png", title):
        markdown += f"\nChart: {out / 'throughput.png'}\n"
    else:
        markdown += "\n(no chart: install the benchmark group, `uv run --group benchmark ...`)\n"
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
