"""benchmarks/browser_upload.py at a tiny size, so the script cannot rot: it runs
end to end (its own moto_server, Datasette and Chromium), every path uploads,
and the checksum-on uploads record their hash. No timing is asserted."""

from __future__ import annotations

import json

import pytest

from e2e.benchmark_runs import run_benchmark

MIB = 1024**2


@pytest.mark.store("moto", reason="the benchmark starts its own moto_server: one run of it is enough")
def test_browser_upload_benchmark_runs_at_a_tiny_size(launch_chromium, tmp_path):
    # launch_chromium: skipped (or failed under CI) where there is no Chromium.
    # 1 MiB is a single POST, 9 MiB two 5 MiB parts.
    run = run_benchmark(
        "browser_upload.py",
        "--sizes",
        "1,9",
        "--multipart-threshold",
        "5",
        "--repeats",
        "1",
        "--out",
        str(tmp_path),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "browser-upload.json").read_text())["uploads"]
    for path, by_size in results.items():
        assert sorted(by_size) == [str(MIB), str(9 * MIB)], path
        assert all(entry["mbps"] > 0 for entry in by_size.values()), path
    hashed = results["browser_sha256"]
    assert hashed[str(MIB)]["content_hash"].startswith("sha256:")
    assert hashed[str(9 * MIB)]["content_hash"].startswith("sha256-composite:")
    assert [e["content_hash"] for e in results["browser_none"].values()] == [None, None]
    for entry in [*hashed.values(), *results["browser_none"].values()]:
        assert entry["renderer_rss_growth_mib"] is not None and entry["datasette_cpu"] is not None
    markdown = (tmp_path / "browser-upload.md").read_text()
    assert "--sizes 1,9 --multipart-threshold 5 --repeats 1" in markdown
    assert "### Ratios and the issue's targets" in markdown
    assert run.stdout.strip() == markdown.strip()
