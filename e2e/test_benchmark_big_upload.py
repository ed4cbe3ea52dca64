"""benchmarks/big_upload.py at a tiny size, so the script cannot rot: it runs end to
end (its own moto_server, Datasette and Chromium), the file goes up in parts, the
hash is recorded and the read-back matches. No timing is asserted."""

from __future__ import annotations

import json

import pytest

from e2e.benchmark_runs import run_benchmark


@pytest.mark.store("moto", reason="the benchmark starts its own store: one run of it is enough")
def test_big_upload_benchmark_runs_at_a_tiny_size(launch_chromium, tmp_path):
    # launch_chromium: skipped (or failed under CI) where there is no Chromium.
    # 12 MiB with a 5 MiB threshold: three parts.
    run = run_benchmark(
        "big_upload.py",
        "--store",
        "moto",
        "--size-mib",
        "12",
        "--multipart-threshold",
        "5",
        "--out",
        str(tmp_path),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "big-upload.json").read_text())
    assert result["size"] == 12 * 1024**2
    assert result["parts"] == 3
    assert result["content_hash"].startswith("sha256-composite:") and result["content_hash"].endswith("-3")
    assert result["read_back_matches"] is True
    assert result["renderer_rss_growth_mib"] is not None and result["datasette_rss_growth_mib"] is not None
    markdown = (tmp_path / "big-upload.md").read_text()
    assert (
        "`uv run python benchmarks/big_upload.py --store moto --size-mib 12 --multipart-threshold 5`"
        in markdown
    )
    assert run.stdout.strip() == markdown.strip()
