"""The README's two commands on a machine without uv: `./dev-server.sh` installs
uv (scripts/ensure-uv.sh), and `uv run pytest`, typed in the next terminal, finds it.

The install runs for real, offline: pip installs uv's own wheel (rebuilt from the
uv installed here, binary and all) for a user whose HOME is a temporary directory,
with Debian's python3 where there is one (it refuses `pip install --user` under
PEP 668 unless told otherwise, as on a fresh Debian 12). A directory of the test's
own stands in for /usr/local/bin, which the test must not touch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PATH = "/usr/bin:/bin"  # a fresh machine's PATH without /usr/local/bin

LIST_UV_FILES = """
import importlib.metadata, json
dist = importlib.metadata.distribution("uv")
print(json.dumps({"version": dist.version, "files": [
    [str(f), str(f.locate().resolve())] for f in dist.files if "__pycache__" not in str(f)
]}))
"""


def installed_uv_distribution() -> dict | None:
    """uv's files as pip installed them beside the `uv` on PATH, or None."""
    found = shutil.which("uv")
    if found is None:
        return None
    candidates = [Path(os.path.realpath(found)).parent / "python3", Path(shutil.which("python3") or "")]
    for python in candidates:
        if python.is_file():
            run = subprocess.run([str(python), "-c", LIST_UV_FILES], capture_output=True, text=True)
            if run.returncode == 0:
                return json.loads(run.stdout)
    return None


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


@pytest.fixture(scope="module")
def uv_wheel_dir(tmp_path_factory) -> Path:
    """A directory holding uv's wheel, rebuilt from the installed distribution."""
    dist = installed_uv_distribution()
    if dist is None:
        pytest.skip("no pip-installed uv here to rebuild its wheel from (this test runs offline)")
    version = dist["version"]
    info = f"uv-{version}.dist-info"
    skipped = {f"{info}/{name}" for name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    members: dict[str, bytes] = {}
    for name, location in dist["files"]:
        if name in skipped:
            continue
        if name.startswith("../"):  # a script pip put in the interpreter's bin/
            name = f"uv-{version}.data/scripts/{Path(name).name}"
        members[name] = Path(location).read_bytes()
    tag = next(
        line.split(":", 1)[1].strip()
        for line in members[f"{info}/WHEEL"].decode().splitlines()
        if line.startswith("Tag:")
    )
    directory = tmp_path_factory.mktemp("wheels")
    record = [record_line(name, data) for name, data in members.items()] + [f"{info}/RECORD,,"]
    with zipfile.ZipFile(directory / f"uv-{version}-{tag}.whl", "w", zipfile.ZIP_STORED) as wheel:
        for name, data in members.items():
            info_ = zipfile.ZipInfo(name)
            info_.external_attr = (0o100755 if "/scripts/" in name else 0o100644) << 16
            wheel.writestr(info_, data)
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return directory


def fresh_user(tmp_path: Path, wheels: Path, link_dir: Path) -> dict:
    """The environment of a user of a fresh machine: no uv on PATH, an empty HOME,
    pip offline with only uv's wheel to install."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "HOME": str(home),
        "PATH": f"{link_dir}:{SYSTEM_PATH}",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "UV_LINK_DIR": str(link_dir),
        "LANG": "C.UTF-8",
    }


def shell(command: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.fixture
def no_uv_on_system_path():
    if any(Path(directory, "uv").exists() for directory in SYSTEM_PATH.split(":")):
        pytest.skip("uv is installed in /usr/bin or /bin here: no fresh machine to imitate")
    if not shutil.which("python3", path=SYSTEM_PATH):
        pytest.skip("no python3 in /usr/bin or /bin")


def test_uv_installed_by_the_dev_server_runs_in_the_next_terminal(
    tmp_path, uv_wheel_dir, no_uv_on_system_path
):
    link_dir = tmp_path / "usr-local-bin"
    link_dir.mkdir()
    env = fresh_user(tmp_path, uv_wheel_dir, link_dir)
    assert shell("command -v uv", env).returncode != 0  # the machine is fresh

    installed = shell(". scripts/ensure-uv.sh && uv --version", env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert f"Linked {link_dir}/uv" in installed.stdout

    # The next terminal: the same user's PATH, nothing exported by the script.
    next_terminal = shell("uv --version", env)
    assert next_terminal.returncode == 0, next_terminal.stderr
    assert next_terminal.stdout.startswith("uv ")


def test_without_a_writable_bin_on_path_it_prints_the_one_line_to_run(
    tmp_path, uv_wheel_dir, no_uv_on_system_path
):
    env = fresh_user(tmp_path, uv_wheel_dir, tmp_path / "not-there")
    installed = shell(". scripts/ensure-uv.sh", env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    hint = installed.stdout.splitlines()[-1].strip()
    assert hint == f'export PATH="{env["HOME"]}/.local/bin:$PATH"'

    assert shell("uv --version", env).returncode != 0  # as the issue found it
    next_terminal = shell(f"{hint}\nuv --version", env)
    assert next_terminal.returncode == 0, next_terminal.stderr
