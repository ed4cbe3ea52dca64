"""Benchmark: the bundled uploader against boto3 on a shaped link with round-trip time.

    sudo uv run python benchmarks/link.py                       # 100 Mbit/s and 1 Gbit/s, 40 ms RTT
    sudo uv run python benchmarks/link.py --smoke               # 8 MiB, 20 x 64 KiB, 50 x 4 KiB at 100 Mbit/s

Needs root (a network namespace) and no other machine. One run makes its own
namespace, `dfs3-link-PID`, brings up its loopback and re-runs itself inside:
`moto_server` (its own process), `datasette serve`, Chromium and this
process's boto3 all live there, on 127.0.0.1 only. A delay proxy
(benchmarks/delay_proxy.py, its own process) stands in front of Datasette and
of the store and adds the RTT: the browser loads the page and talks to
Datasette through it, and reaches the store through it as the source's
`public_endpoint_url`; boto3 uses the same store proxy. Datasette's own calls
to the store go direct, as a server's would inside its cloud.

Each link is an `htb` qdisc on the namespace's loopback with one class per
direction at the link's rate, chosen by a u32 filter on the proxies' ports, so
only the user's hop (client <-> proxy) is shaped and each byte is counted
once (this kernel has no `prio` qdisc to hang `tbf` from, and no `netem`). The loopback MTU is set to 1500, so a link's payload rate is
rate x 1448 / 1514 (TCP with timestamps in an Ethernet-sized frame).

For each link, in one run, side by side:
- one big file (1 GiB): the uploader on a `checksum: sha256` source against
  boto3 `upload_file` with ChecksumAlgorithm=SHA256, as a fraction of the payload rate;
- many files (200 x 256 KiB) and many tiny files (2,000 x 4 KiB): files per
  second, all chosen at once in the uploader, against boto3 `put_object` on 8 threads.

The namespace is always deleted, after an error or Ctrl-C too; every run is
bounded (RUN_TIMEOUT per upload batch).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MiB = 1024**2
KiB = 1024
BUCKET = "bench"
SOURCE = "s3link"
# Bytes of TCP payload in one 1514-byte frame (MTU 1500, TCP timestamps on).
PAYLOAD_FRACTION = 1448 / 1514
RUN_TIMEOUT = 900
BOTO3_THREADS = 8
NAMESPACE_PREFIX = "dfs3-link-"

# Counts the uploader's settled files; start at the file input's change event.
TIMER = """() => {
  window.__bench = { start: null, end: null, done: 0, failed: 0, errors: [], expected: 0 };
  document.addEventListener("change", () => { window.__bench.start = performance.now(); }, { capture: true });
  const settle = () => {
    const b = window.__bench;
    if (b.done + b.failed === b.expected) b.end = performance.now();
  };
  document.addEventListener("files-s3-upload-done", (event) => {
    window.__bench.done += 1;
    window.__bench.hash = event.detail.file.content_hash;
    settle();
  });
  document.addEventListener("files-s3-upload-error", (event) => {
    window.__bench.failed += 1;
    window.__bench.errors.push(event.detail.error.message || String(event.detail.error));
    settle();
  });
}"""


# The uploader set back to an earlier behaviour, for the "before" column: (label, script).
def before_parallel_files(n: int) -> tuple[str, str]:
    """parallel-files forced to n: every file, small or not (its setting before small files went 12 at once)."""
    script = (
        "() => { const s = document.querySelector('datasette-files-s3-upload').scheduler;"
        f" s.parallel = s.smallParallel = {n}; }}"
    )
    return f"uploader, parallel-files={n} (before)", script


def with_small_parallel(n: int) -> tuple[str, str]:
    """Up to n small files at once (batches on): a setting to try, not an earlier one."""
    script = f"() => {{ document.querySelector('datasette-files-s3-upload').scheduler.smallParallel = {n}; }}"
    return f"uploader, {n} small files at once (to compare)", script


# Each prepare and complete sent alone (static/batch-requests.js with batches of 1).
BEFORE_UNBATCHED = (
    "uploader, no batches (before)",
    "() => { const api = document.querySelector('datasette-files-s3-upload').api;"
    " api.prepares.maxFiles = api.completes.maxFiles = 1; }",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Link:
    """A shaped link: rate in bits per second, round-trip time in ms."""

    rate_bits: int
    rtt_ms: float

    @property
    def label(self) -> str:
        rate = (
            f"{self.rate_bits // 10**9} Gbit/s"
            if self.rate_bits >= 10**9
            else f"{self.rate_bits // 10**6} Mbit/s"
        )
        return f"{rate}, {self.rtt_ms:g} ms RTT"

    @property
    def payload_bytes_per_second(self) -> float:
        return self.rate_bits / 8 * PAYLOAD_FRACTION


def parse_rate(text: str) -> int:
    """'100mbit' / '1gbit' -> bits per second."""
    text = text.lower().removesuffix("/s").removesuffix("it")
    for suffix, factor in (("gb", 10**9), ("mb", 10**6), ("kb", 10**3)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=check, capture_output=True, text=True)


# --- outside the namespace ---------------------------------------------------------


def remove_stale_namespaces() -> None:
    """Delete namespaces an earlier run left behind when it was killed outright (SIGKILL)."""
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(NAMESPACE_PREFIX):
            pid = name.removeprefix(NAMESPACE_PREFIX)
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                delete_namespace(name)


def delete_namespace(name: str) -> None:
    """Stop what still runs in the namespace (only what this run started there), then delete it."""
    for pid in run("ip", "netns", "pids", name, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    run("ip", "netns", "del", name, check=False)


def outside(argv: list[str]) -> int:
    """Make the namespace, run this script inside it, and always delete it."""
    if os.geteuid() != 0:
        print("benchmarks/link.py needs root for its network namespace (ip netns add).", file=sys.stderr)
        return 2
    remove_stale_namespaces()
    name = f"{NAMESPACE_PREFIX}{os.getpid()}"
    run("ip", "netns", "add", name)
    child = None
    try:
        run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "mtu", "1500", "up")
        # Room for a 1 Gbit/s x 40 ms window (5 MB) in each socket buffer.
        for key in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"):
            run("ip", "netns", "exec", name, "sysctl", "-qw", f"{key}=4096 131072 16777216", check=False)
        child = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-m", "benchmarks.link", "--inside", *argv],
            cwd=ROOT,
        )
        return child.wait()
    except KeyboardInterrupt:
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(15)
        return 130
    finally:
        delete_namespace(name)


# --- inside the namespace ----------------------------------------------------------


def tc(command: str) -> None:
    run("tc", *command.split())


def shape(link: Link, ports: list[int]) -> None:
    """Shape traffic to and from the proxies' ports at the link's rate, one htb class per direction.

    Unclassified traffic (the proxies to Datasette and the store, Datasette to
    the store) goes straight through: htb without a default class sends it directly.
    """
    run("tc", "qdisc", "del", "dev", "lo", "root", check=False)
    # A burst of about 4 ms of the link (at least 32 KiB): enough to keep up, small enough to shape.
    burst = max(32 * KiB, link.rate_bits // 8 // 250)
    tc("qdisc add dev lo root handle 1: htb")
    for classid in ("1:2", "1:3"):
        tc(
            f"class add dev lo parent 1: classid {classid} htb rate {link.rate_bits}bit "
            f"ceil {link.rate_bits}bit burst {burst} cburst {burst}"
        )
    for port in ports:
        # Towards a proxy is the user's upstream, from it the downstream.
        for direction, classid in (("dport", "1:2"), ("sport", "1:3")):
            tc(
                f"filter add dev lo parent 1: protocol ip prio 1 u32 match ip {direction} {port} 0xffff flowid {classid}"
            )


def make_files(directory: Path, count: int, size: int) -> list[Path]:
    """`count` files of `size` random bytes each."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = directory / f"f{n:05}.bin"
        with open(path, "wb") as out:
            for start in range(0, size, 16 * MiB):
                out.write(os.urandom(min(16 * MiB, size - start)))
        paths.append(path)
    return paths


class LinkBench:
    """The servers, proxy and browser of one run inside the namespace."""

    def __init__(self, moto, datasette, datasette_front: str, store_front: str, browser, proxy_pid: int):
        self.moto = moto
        self.datasette = datasette
        self.datasette_front = datasette_front
        self.browser = browser
        self.cookie = datasette.cookie_for("bench")
        # The user's boto3, through the same delayed store front as the browser.
        self.s3 = boto3.client(
            "s3",
            endpoint_url=store_front,
            region_name=moto.region,
            aws_access_key_id=moto.access_key_id,
            aws_secret_access_key=moto.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=BOTO3_THREADS + 2),
        )
        self.direct = moto.client()
        # Where each upload's CPU went. (Imported here: outside the namespace,
        # `python benchmarks/link.py` has no `benchmarks` package to import from.)
        from benchmarks.cpu_share import CpuMeter, chromium_processes, playwright_driver

        self.cpu = CpuMeter(
            {
                "Chromium: page": lambda: chromium_processes(renderers=True),
                "Chromium: browser, network": lambda: chromium_processes(renderers=False),
                "Datasette": lambda: [datasette.process.pid],
                "store (moto)": lambda: [moto.process.pid],
                "delay proxy": lambda: [proxy_pid],
                "this script (boto3)": lambda: [os.getpid()],
                "Playwright driver": playwright_driver,
            }
        )
        self.cpu_spent: dict[str, float] = {}

    def empty_bucket(self) -> None:
        for listing in self.direct.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            keys = [{"Key": item["Key"]} for item in listing.get("Contents", [])]
            if keys:
                self.direct.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})

    def browser_upload(self, files: list[Path], before: str | None = None) -> float:
        """Choose every file at once in the uploader's page; seconds until the last one settles.

        `before`, if given, is a script run on the page first: it sets the uploader back
        to an earlier behaviour (BEFORE).
        """
        context = self.browser.new_context(base_url=self.datasette_front)
        context.add_cookies([{"name": "ds_actor", "value": self.cookie, "url": self.datasette_front}])
        try:
            page = context.new_page()
            page.goto(f"/-/files-s3/upload/{SOURCE}")
            page.evaluate(TIMER)
            page.evaluate(f"() => {{ window.__bench.expected = {len(files)}; }}")
            if before:
                page.evaluate(before)
            cpu_before = self.cpu.snapshot()
            page.set_input_files("datasette-files-s3-upload input[type=file]", [str(f) for f in files])
            deadline = time.monotonic() + RUN_TIMEOUT
            while (state := page.evaluate("() => window.__bench"))["end"] is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the uploader did not finish {len(files)} files in {RUN_TIMEOUT} s")
                page.wait_for_timeout(200)
            # Before the context closes: its renderer's CPU goes with it.
            self.cpu_spent = self.cpu.spent(cpu_before, self.cpu.snapshot())
        finally:
            context.close()
        if state["failed"]:
            raise RuntimeError(f"{state['failed']} uploads failed, first: {state['errors'][0]}")
        if not state.get("hash"):
            raise RuntimeError("the uploader finished without a content_hash on a checksum: sha256 source")
        return (state["end"] - state["start"]) / 1000

    def boto3_upload_file(self, file: Path) -> float:
        start = time.perf_counter()
        self.s3.upload_file(
            str(file), BUCKET, f"boto3/{uuid.uuid4().hex}", ExtraArgs={"ChecksumAlgorithm": "SHA256"}
        )
        return time.perf_counter() - start

    def boto3_put_objects(self, files: list[Path]) -> float:
        def put(file: Path) -> None:
            self.s3.put_object(Bucket=BUCKET, Key=f"boto3/{uuid.uuid4().hex}", Body=file.read_bytes())

        start = time.perf_counter()
        with ThreadPoolExecutor(BOTO3_THREADS) as pool:
            list(pool.map(put, files))
        return time.perf_counter() - start

    def measure(self, name: str, files: list[Path], before: str | None) -> dict:
        """The uploader and boto3 on the same files, one after the other, each into an empty bucket.

        With `before` (a script, see BEFORE), a set of several files also goes
        through the uploader set back to an earlier behaviour, measured in this same run.
        """
        paths = ["uploader", "boto3"]
        if before and len(files) > 1:
            paths.insert(1, "uploader_forced")
        results = {"cpu": {}}
        for path in paths:
            try:
                if path == "uploader":
                    seconds = self.browser_upload(files)
                elif path == "uploader_forced":
                    seconds = self.browser_upload(files, before)
                else:
                    cpu_before = self.cpu.snapshot()
                    if len(files) == 1:
                        seconds = self.boto3_upload_file(files[0])
                    else:
                        seconds = self.boto3_put_objects(files)
                    self.cpu_spent = self.cpu.spent(cpu_before, self.cpu.snapshot())
            finally:
                self.empty_bucket()
            results[path] = seconds
            results["cpu"][path] = self.cpu_spent
            log(f"{name} {path}: {seconds:.2f} s (load {os.getloadavg()[0]:.1f})")
        return results


def cell(link: Link, count: int, size: int, seconds: float) -> str:
    """One file: its share of the link's payload rate; several: files per second."""
    if count == 1:
        return (
            f"{size / seconds / link.payload_bytes_per_second:.2f} of link ({size / seconds / 1e6:.1f} MB/s)"
        )
    return f"{count / seconds:.1f} files/s ({seconds:.1f} s)"


def rows_for(link: Link, results: dict, workloads: list[tuple[str, int, int]]) -> list[list[str]]:
    """Table rows: per workload, the uploader's and boto3's figure and their ratio."""
    rows = []
    for name, count, size in workloads:
        measured = results[name]
        up, b3, forced = measured["uploader"], measured["boto3"], measured.get("uploader_forced")
        forced_cells = [cell(link, count, size, forced), f"{b3 / forced:.2f}"] if forced else ["—", "—"]
        rows.append(
            [
                link.label,
                name,
                cell(link, count, size, up),
                cell(link, count, size, b3),
                f"{b3 / up:.2f}",
                *forced_cells,
            ]
        )
    return rows


PATH_LABELS = {"uploader": "uploader", "uploader_forced": "uploader (compared)", "boto3": "boto3"}


def cpu_rows(link: Link, results: dict, workloads) -> list[list[str]]:
    """Per many-file workload and path: each part's CPU milliseconds per file, and
    the files per second the machine's cores would allow at that cost."""
    rows = []
    for name, count, _ in workloads:
        if count == 1:
            continue
        for path, spent in results[name]["cpu"].items():
            total = sum(spent.values())
            allowed = os.cpu_count() * count / total if total else float("inf")
            rows.append(
                [
                    link.label,
                    name,
                    PATH_LABELS[path],
                    *(f"{1000 * spent[part] / count:.1f}" for part in CPU_PARTS),
                    f"{1000 * total / count:.1f}",
                    f"{allowed:.0f} files/s",
                    f"{count / results[name][path]:.1f} files/s",
                ]
            )
    return rows


CPU_PARTS = [
    "Chromium: page",
    "Chromium: browser, network",
    "Datasette",
    "store (moto)",
    "delay proxy",
    "this script (boto3)",
    "Playwright driver",
]


def goal_lines(link: Link, results: dict, workloads) -> list[str]:
    """The issue's goals, where this link is the one they are set for (100 Mbit/s, 40 ms)."""
    if link != Link(100 * 10**6, 40):
        return []
    big_name, _, big_size = workloads[0]
    big = big_size / results[big_name]["uploader"] / link.payload_bytes_per_second
    lines = [
        f"- goal: big file >= 0.90 of the link at {link.label}: {big:.2f} ({'met' if big >= 0.9 else 'NOT met'})"
    ]
    for name, count, _ in workloads[1:]:
        measured = results[name]
        ratio = measured["boto3"] / measured["uploader"]
        lines.append(
            f"- goal: {name} >= 0.80 of boto3's files/s: {ratio:.2f} ({'met' if ratio >= 0.8 else 'NOT met'}); "
            + cpu_bound(count, measured)
        )
    return lines


def cpu_bound(count: int, measured: dict) -> str:
    """Whether the machine allowed more: the uploader's files/s against what its parts' CPU allows."""
    spent = {path: sum(measured["cpu"][path].values()) / count for path in ("uploader", "boto3")}
    allowed = os.cpu_count() / spent["uploader"] if spent["uploader"] else float("inf")
    rate = count / measured["uploader"]
    # In the field the browser, Datasette and the store each have their own CPU.
    busiest, seconds = max(measured["cpu"]["uploader"].items(), key=lambda item: item[1])
    return (
        f"the uploader's parts used {1000 * spent['uploader']:.1f} CPU-ms a file (boto3's "
        f"{1000 * spent['boto3']:.1f}), so {os.cpu_count()} cores allow {allowed:.0f} files/s "
        f"and it ran at {rate / allowed:.2f} of that; with a core of its own, the busiest part "
        f"({busiest}, {1000 * seconds / count:.1f} ms a file) would allow {count / seconds:.0f} files/s"
    )


def inside(args) -> int:
    from playwright.sync_api import sync_playwright

    from benchmarks import report
    from tests.live_servers import CHROMIUM, CHROMIUM_ARGS, DatasetteProcess, free_port, live_config
    from tests.s3_servers import MotoServer

    links = [Link(parse_rate(rate), args.rtt_ms) for rate in args.links.split(",")]
    workloads = [
        (f"1 x {report.size_label(args.big_mib * MiB)}", 1, args.big_mib * MiB),
        (f"{args.many} x {args.many_kib} KiB", args.many, args.many_kib * KiB),
        (f"{args.tiny} x {args.tiny_kib} KiB", args.tiny, args.tiny_kib * KiB),
    ]
    before = None
    if args.compare_small_parallel:
        before = with_small_parallel(args.compare_small_parallel)
    elif args.compare_unbatched:
        before = BEFORE_UNBATCHED
    elif args.compare_parallel_files:
        before = before_parallel_files(args.compare_parallel_files)
    workdir = Path(tempfile.mkdtemp(prefix="dfs3-link-bench-"))
    started = time.monotonic()
    load_before = os.getloadavg()
    moto = MotoServer(global_cors=True).start()
    store_port, datasette_port = free_port(), free_port()
    store_front = f"http://127.0.0.1:{store_port}"
    datasette = DatasetteProcess(
        live_config(
            moto.source_config(BUCKET, public_endpoint_url=store_front, checksum="sha256"), source=SOURCE
        )
    )
    datasette_front = f"http://127.0.0.1:{datasette_port}"
    proxy = None
    results: dict = {}
    try:
        moto.create_bucket(BUCKET, cors_origins=[datasette_front])
        datasette.start()
        proxy = subprocess.Popen(
            [
                sys.executable, "-m", "benchmarks.delay_proxy", "--rtt-ms", str(args.rtt_ms),
                "--pair", f"{store_port}:{moto.port}", "--pair", f"{datasette_port}:{datasette.port}",
                *(["--trace"] if args.trace else []),
            ],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
            stderr=open(args.trace, "w") if args.trace else None,
        )  # fmt: skip
        log(f"store front :{store_port}, Datasette front :{datasette_port}")
        if proxy.stdout.readline().strip() != "ready":
            raise RuntimeError("the delay proxy did not start")
        files = {
            name: make_files(workdir / f"w{index}", count, size)
            for index, (name, count, size) in enumerate(workloads)
        }
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            bench = LinkBench(moto, datasette, datasette_front, store_front, browser, proxy.pid)
            for link in links:
                shape(link, [store_port, datasette_port])
                log(f"link {link.label}")
                # Untimed: the first page, worker and connections of each path.
                warm = make_files(workdir / "warm", 2, 4 * KiB)
                bench.measure("warm-up", warm, None)
                results[link] = {
                    name: bench.measure(f"{link.label}, {name}", files[name], before and before[1])
                    for name, _, _ in workloads
                }
            chromium_version = browser.version
            browser.close()
    finally:
        if proxy is not None:
            proxy.kill()
            proxy.wait()
        datasette.stop()
        moto.stop()
        run("tc", "qdisc", "del", "dev", "lo", "root", check=False)

    elapsed = time.monotonic() - started
    rows = [row for link in links for row in rows_for(link, results[link], workloads)]
    command = "uv run python benchmarks/link.py" + "".join(f" {a}" for a in args.argv)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} UTC with `{command}` in {elapsed / 60:.1f} minutes, "
        f"Chromium {chromium_version}, {os.cpu_count()} CPUs, moto_server, one round per cell.",
        "Load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + ".",
        "",
        report.table(
            [
                "link",
                "workload",
                "uploader (checksum: sha256)",
                "boto3 (SHA-256 / put_object x8)",
                "uploader / boto3",
                before[0] if before else "uploader (before)",
                "that / boto3",
            ],
            rows,
        ),
        "",
        "The link's payload rate is rate x 1448/1514; the ratio is boto3's time over the uploader's.",
        "",
        f"CPU milliseconds per file, by part, over each many-file upload ({os.cpu_count()} cores: "
        "'CPU allows' is the files per second at which they would all be busy):",
        "",
        report.table(
            ["link", "workload", "path", *CPU_PARTS, "total", "CPU allows", "measured"],
            [row for link in links for row in cpu_rows(link, results[link], workloads)],
        ),
        "",
        *[line for link in links for line in goal_lines(link, results[link], workloads)],
    ]
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--links", default="100mbit,1gbit", help="link rates, comma-separated (default 100mbit,1gbit)"
    )
    parser.add_argument(
        "--rtt-ms", type=float, default=40, help="round-trip time the proxy adds (default 40)"
    )
    parser.add_argument("--big-mib", type=int, default=1024, help="the big file's size in MiB (default 1024)")
    parser.add_argument("--many", type=int, default=200, help="how many small files (default 200)")
    parser.add_argument("--many-kib", type=int, default=256, help="their size in KiB (default 256)")
    parser.add_argument("--tiny", type=int, default=2000, help="how many tiny files (default 2000)")
    parser.add_argument("--tiny-kib", type=int, default=4, help="their size in KiB (default 4)")
    parser.add_argument(
        "--compare-parallel-files",
        type=int,
        default=3,
        help="also run the many-file workloads with the uploader's parallel-files forced to this "
        "(default 3, its setting before small files went 12 at once; 0 to skip)",
    )
    parser.add_argument(
        "--compare-unbatched",
        action="store_true",
        help="run the many-file workloads again with each prepare and complete sent alone "
        "(no batches), instead of the parallel-files comparison",
    )
    parser.add_argument(
        "--compare-small-parallel",
        type=int,
        default=0,
        help="instead, run the many-file workloads again with up to this many small files at once",
    )
    parser.add_argument(
        "--trace", help="write every request's time and first line, as the proxy saw it, here"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a quick run: 8 MiB, 20 x 64 KiB, 50 x 4 KiB at 100 Mbit/s"
    )
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    # --smoke changes the defaults; sizes given beside it still win.
    if "--smoke" in argv:
        parser.set_defaults(links="100mbit", big_mib=8, many=20, many_kib=64, tiny=50)
    args = parser.parse_args(argv)
    if not args.inside:
        return outside(argv)
    args.argv = [a for a in argv if a != "--inside"]
    return inside(args)


if __name__ == "__main__":
    sys.exit(main())
