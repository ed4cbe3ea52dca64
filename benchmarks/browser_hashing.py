"""How fast Chromium computes SHA-256 with static/checksums.js, beside Python's hashlib.

    uv run python benchmarks/browser_hashing.py [--size-mib 256] [--part-mib 8] [--rounds 3]

Starts `datasette serve` (no sources: it serves the plugin's static/ as shipped)
and Chromium (CHROMIUM_PATH, default /usr/bin/chromium), writes a random file to
a temporary directory, chooses it in a file input as a user would, and times
each way of hashing it inside the page (performance.now(), so Playwright's own
round trips are not counted). Prints MB/s (1 MB = 10^6 bytes; median and best
of the rounds) and the largest peak-RSS growth among Chromium's renderer
processes during the round (VmHWM, reset before each round). Numbers only: no
pass or fail.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from memory import PeakRSS, chromium_renderer_pids
from playwright.sync_api import sync_playwright

from tests.live_servers import CHROMIUM, CHROMIUM_ARGS, DatasetteProcess

MIB = 1024**2
STATIC = "/-/static-plugins/datasette_files_s3"

# Each takes (file, partSize) and resolves to the milliseconds it took.
METHODS = {
    "worker: wholeFileSha256 (hash-wasm, whole file)": """
        const t = performance.now();
        await checksums.wholeFileSha256(file);
        return performance.now() - t;""",
    "WebCrypto: sha256Base64 per part, one at a time": """
        const t = performance.now();
        for (let start = 0; start < file.size; start += partSize) {
            await checksums.sha256Base64(file.slice(start, start + partSize));
        }
        return performance.now() - t;""",
    "WebCrypto: sha256Base64 per part, 4 at a time": """
        const t = performance.now();
        const starts = [];
        for (let start = 0; start < file.size; start += partSize) starts.push(start);
        const next = async () => {
            while (starts.length) {
                const start = starts.shift();
                await checksums.sha256Base64(file.slice(start, start + partSize));
            }
        };
        await Promise.all([next(), next(), next(), next()]);
        return performance.now() - t;""",
    "worker (whole file) and WebCrypto parts together": """
        const t = performance.now();
        const parts = (async () => {
            for (let start = 0; start < file.size; start += partSize) {
                await checksums.sha256Base64(file.slice(start, start + partSize));
            }
        })();
        await Promise.all([checksums.wholeFileSha256(file), parts]);
        return performance.now() - t;""",
    "WebCrypto on the whole file in memory (not used: holds the file)": """
        const t = performance.now();
        await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
        return performance.now() - t;""",
    "reading only, no hashing (Blob stream, default reader)": """
        const t = performance.now();
        const reader = file.stream().getReader();
        while (!(await reader.read()).done);
        return performance.now() - t;""",
}


def random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for start in range(0, size, 16 * MIB):
            f.write(os.urandom(min(16 * MIB, size - start)))


def hashlib_ms(path: Path) -> float:
    """Milliseconds for hashlib to hash the file, reading it 8 MiB at a time."""
    start = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 * MIB), b""):
            digest.update(chunk)
    return (time.perf_counter() - start) * 1000


def measure(page, browser, body: str, part_size: int) -> tuple[float, float]:
    """(milliseconds, peak renderer RSS growth in MiB) for one round of a method."""
    with contextlib.ExitStack() as stack:
        peaks = [stack.enter_context(PeakRSS(pid)) for pid in chromium_renderer_pids(browser)]
        ms = page.evaluate(
            f"async (partSize) => {{ const file = document.getElementById('file').files[0]; {body} }}",
            part_size,
        )
    return ms, max(peak.growth_mib for peak in peaks)


def row(name: str, size: int, times_ms: list[float], growth_mib: list[float] | None) -> str:
    rates = [size / (ms / 1000) / 1e6 for ms in times_ms]
    memory = f"{max(growth_mib):.0f}" if growth_mib else "-"
    return f"| {name} | {statistics.median(rates):.0f} | {max(rates):.0f} | {memory} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size, part_size = args.size_mib * MIB, args.part_mib * MIB

    with tempfile.TemporaryDirectory(prefix="dfs3-hashing-") as tmp:
        path = Path(tmp) / "random.bin"
        random_file(path, size)
        lines = [
            f"SHA-256 of {args.size_mib} MiB, part size {args.part_mib} MiB, {args.rounds} rounds",
            "",
            "| method | MB/s median | MB/s best | renderer peak RSS growth, MiB |",
            "| --- | ---: | ---: | ---: |",
            row("Python hashlib (reference)", size, [hashlib_ms(path) for _ in range(args.rounds)], None),
        ]
        datasette = DatasetteProcess({}).start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.goto(datasette.url + "/")
                page.evaluate(
                    """async (url) => {
                        document.body.append(Object.assign(document.createElement("input"), {type: "file", id: "file"}));
                        window.checksums = await import(url);
                    }""",
                    datasette.url + STATIC + "/checksums.js",
                )
                page.set_input_files("#file", str(path))
                lines.insert(1, f"Chromium {browser.version}, {os.cpu_count()} CPUs")
                for name, body in METHODS.items():
                    rounds = [measure(page, browser, body, part_size) for _ in range(args.rounds)]
                    lines.append(row(name, size, [ms for ms, _ in rounds], [mib for _, mib in rounds]))
                browser.close()
        finally:
            datasette.stop()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
