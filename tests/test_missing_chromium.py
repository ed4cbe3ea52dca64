"""Without a Chromium, `uv run pytest` skips the browser tests and ends by saying
exactly how to get one; under CI the same run fails (e2e/conftest.py).

Each test runs one browser test in a pytest of its own, with CHROMIUM_PATH naming
a file that is not there (the one way to take Debian's Chromium away from a run
without uninstalling it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONE_BROWSER_TEST = "e2e/test_empty_file.py::test_bundled_uploader_uploads_an_empty_file"


def run_browser_test(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CI"}
    environment.update(CHROMIUM_PATH=str(tmp_path / "no-chromium-here"), **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", ONE_BROWSER_TEST, "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )


def test_a_run_without_chromium_ends_by_saying_how_to_get_it(tmp_path):
    run = run_browser_test(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout
    note = run.stdout[run.stdout.index("browser tests skipped") :]
    assert "sudo apt-get install -y chromium" in note
    assert "uv run playwright install --with-deps chromium" in note
    assert "CHROMIUM_PATH" in note


def test_under_ci_a_missing_chromium_fails_the_run(tmp_path):
    run = run_browser_test(tmp_path, CI="true")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 error" in run.stdout and "sudo apt-get install -y chromium" in run.stdout
