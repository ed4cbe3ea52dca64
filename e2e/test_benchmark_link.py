"""benchmarks/link.py at a tiny size on a shaped 100 Mbit/s, 40 ms link, so the
script cannot rot: its namespace, shaping, delay proxy, Datasette, moto and
Chromium all come up, every workload uploads both ways, and the namespace is
gone afterwards, after Ctrl-C too. No timing is asserted.

It needs root (ip netns add), or sudo without a password: CI has one of them;
elsewhere without either the test skips, and under CI it fails instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SMOKE = ["--smoke", "--big-mib", "2", "--many", "4", "--many-kib", "64", "--tiny", "6"]


@pytest.fixture
def as_root(launch_chromium) -> list[str]:
    """The prefix that runs a command as root: none when we are root, else `sudo -n`."""
    # launch_chromium: skipped (or failed under CI) where there is no Chromium.
    if os.geteuid() == 0:
        return []
    if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    message = "benchmarks/link.py needs root (or sudo without a password) for its network namespace"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def link_namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.startswith("dfs3-link-")}


def start_benchmark(as_root: list[str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*as_root, sys.executable, "-m", "benchmarks.link", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.store("moto", reason="the benchmark starts its own moto_server: one run of it is enough")
@pytest.mark.timeout(300)  # Chromium, Datasette and moto start in a fresh namespace: slow on a busy machine
def test_link_benchmark_runs_on_a_shaped_link(as_root):
    before = link_namespaces()
    run = start_benchmark(as_root, *SMOKE)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-3000:]
    rows = [line.split(" | ") for line in stdout.splitlines() if line.startswith("| 100 Mbit/s, 40 ms RTT |")]
    paths = ("uploader", "uploader (compared)", "boto3")
    throughput = [row for row in rows if row[2] not in paths]
    assert [row[1] for row in throughput] == ["1 x 2 MiB", "4 x 64 KiB", "6 x 4 KiB"]
    assert "of link" in throughput[0][2] and "files/s" in throughput[1][2]
    # Where the CPU went: a row per many-file workload and path.
    cpu = [row for row in rows if row[2] in paths]
    assert [row[1:3] for row in cpu] == [
        [workload, path] for workload in ("4 x 64 KiB", "6 x 4 KiB") for path in paths
    ]
    uploader_total_ms = [float(row[-3]) for row in cpu if row[2] == "uploader"]
    assert all(total > 0 for total in uploader_total_ms), cpu
    assert "- goal: big file >= 0.90 of the link" in stdout
    assert link_namespaces() <= before


@pytest.mark.store("moto", reason="the benchmark starts its own moto_server: one run of it is enough")
@pytest.mark.timeout(300)  # Chromium, Datasette and moto start in a fresh namespace: slow on a busy machine
def test_link_benchmark_deletes_its_namespace_on_ctrl_c(as_root):
    before = link_namespaces()
    run = start_benchmark(as_root, *SMOKE)

    def signal_group(name: str) -> None:
        # The whole process group, as a terminal's Ctrl-C does (through sudo when not root).
        subprocess.run([*as_root, "kill", "-s", name, "--", f"-{run.pid}"], check=False)

    try:
        # Interrupt once the servers are up and the link shaped.
        for line in run.stderr:
            if "] link 100 Mbit/s" in line:
                break
        assert link_namespaces() - before, "no namespace while the benchmark runs"
        signal_group("INT")
        run.wait(60)
    finally:
        if run.poll() is None:
            signal_group("KILL")
            run.wait()
    assert run.returncode != 0
    assert link_namespaces() <= before
