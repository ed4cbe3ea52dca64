"""The wheel a user installs: it carries the browser code and registers `storage: s3`."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is needed to build the wheel")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([uv, "build", "--wheel", "-o", str(out), str(ROOT)], check=True, capture_output=True)
    (path,) = out.glob("*.whl")
    return path


def test_wheel_ships_static_and_templates(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    static = sorted(n for n in names if n.startswith("datasette_files_s3/static/"))
    expected = sorted(
        f"datasette_files_s3/static/{p.relative_to(ROOT / 'static').as_posix()}"
        for p in (ROOT / "static").rglob("*")
        if p.is_file()
    )
    assert static == expected
    # Subfolders too: the vendored hash-wasm goes with its licence.
    assert {
        "datasette_files_s3/static/sha256-worker.js",
        "datasette_files_s3/static/vendor/hash-wasm/sha256.umd.min.js",
        "datasette_files_s3/static/vendor/hash-wasm/LICENSE",
    } <= set(static)
    assert any(n.startswith("datasette_files_s3/templates/") for n in names)
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    assert "[datasette]" in entry_points and "datasette_files_s3" in entry_points


def test_installed_wheel_registers_s3_storage(wheel, tmp_path, bucket):
    uv = shutil.which("uv")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(python),
            "--prerelease=if-necessary-or-explicit",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    config = {
        "plugins": {
            "datasette-files": {"sources": {"wheel-s3": {"storage": "s3", "config": bucket.source_config()}}}
        }
    }
    (tmp_path / "datasette.json").write_text(json.dumps(config))
    result = subprocess.run(
        [
            str(venv / "bin" / "datasette"),
            "--memory",
            "-c",
            str(tmp_path / "datasette.json"),
            "--get",
            "/-/files/sources.json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    (source,) = json.loads(result.stdout)["sources"]
    assert (source["slug"], source["storage_type"]) == ("wheel-s3", "s3")
    plugins = subprocess.run(
        [str(venv / "bin" / "datasette"), "plugins"], capture_output=True, text=True, check=True
    )
    assert "datasette-files-s3" in plugins.stdout


@pytest.mark.parametrize(
    "vendor, build",
    [("static/vendor/hash-wasm", "sha256.umd.min.js"), ("e2e/vendor/axe-core", "axe.min.js")],
)
def test_vendored_file_is_the_file_its_readme_pins(vendor, build):
    """An edit to a vendored build, or an upgrade without updating its README, fails here."""
    folder = ROOT / vendor
    pinned = re.search(
        rf"`{re.escape(build)}` SHA-256: `([0-9a-f]{{64}})`", (folder / "README.md").read_text()
    )
    assert pinned, f"{vendor}/README.md must name the build's SHA-256"
    assert hashlib.sha256((folder / build).read_bytes()).hexdigest() == pinned[1]
