#!/usr/bin/env python3
"""LocalStack's S3 on 127.0.0.1, no Docker: the S3 server of the suite that enforces.

moto accepts every upload whatever its POST policy says; LocalStack's S3
enforces the policy's conditions, presigned URL signatures and bucket CORS
rules, so the tests can see what a real store does with a lying upload.

    python3 scripts/localstack_s3.py install          # once; cached, idempotent
    python3 scripts/localstack_s3.py serve --port 4566

`serve` installs first if needed, then runs in the foreground until it gets
TERM or INT. It is ready when http://127.0.0.1:PORT/_localstack/health answers.
Presigned URLs are checked against the fixed secret `test` (any key id).

LocalStack lives in its own virtualenv (it needs Python >= 3.12 and pins
that clash with the project's), under ~/.cache/datasette-files-s3/. Only the
standard library is used here, so any python3 can run this file.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Every package LocalStack runs on, by version and hash, so that an install
# months from now is the one measured here: its dependencies float, and their
# newer releases break it (cbor2 6, pyOpenSSL 24.3). The pins it needs are in
# localstack-requirements.in; the command to regenerate the lock is at its top.
LOCK = Path(__file__).resolve().parent / "localstack-requirements.txt"
SECRET_ACCESS_KEY = "test"
_TAG = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]  # a changed lock makes a new virtualenv
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "datasette-files-s3"
VENV = Path(os.environ.get("LOCALSTACK_VENV") or CACHE / f"localstack-{_TAG}")
PYTHON = VENV / "bin" / "python"


def log(message: str) -> None:
    print(f"localstack_s3.py: {message}", file=sys.stderr, flush=True)


def find_base_python() -> str:
    """A Python >= 3.12 to build the virtualenv from: pyenv's 3.13 or 3.12 first, else what uv finds."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for pattern in ("3.13*", "3.12*"):
        for candidate in sorted((pyenv_root / "versions").glob(pattern), reverse=True):
            if (candidate / "bin" / "python3").exists():
                return str(candidate / "bin" / "python3")
    return ">=3.12"  # uv's own discovery: PATH, then interpreters uv manages


def uv() -> str:
    found = shutil.which("uv")
    if not found:
        sys.exit("localstack_s3.py: needs uv on PATH (https://docs.astral.sh/uv/)")
    return found


def install() -> Path:
    """Make the virtualenv once; later calls return at once. Safe to run concurrently."""
    marker = VENV / ".installed"
    if marker.exists():
        return VENV
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"localstack-{_TAG}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second caller waits here, then finds the marker
        if marker.exists():
            return VENV
        started = time.monotonic()
        log(f"installing LocalStack from {LOCK.name} into {VENV}")
        shutil.rmtree(VENV, ignore_errors=True)  # a half-made one from an interrupted install
        subprocess.run([uv(), "venv", "--quiet", "--python", find_base_python(), str(VENV)], check=True)
        # The lock names every package: nothing is resolved, every file's hash is checked.
        install_locked = ["pip", "install", "--quiet", "--require-hashes", "--no-deps", "-r", str(LOCK)]
        subprocess.run([uv(), *install_locked, "--python", str(PYTHON)], check=True)
        marker.write_text(LOCK.name + "\n")
        log(f"installed in {time.monotonic() - started:.0f}s")
    return VENV


def server_environment(port: int, data_dir: str) -> dict[str, str]:
    """LocalStack's settings: S3 only, loopback, signatures checked, nothing phoned home, nothing kept."""
    address = f"127.0.0.1:{port}"
    return {
        **os.environ,
        "SERVICES": "s3",
        "GATEWAY_LISTEN": address,
        "LOCALSTACK_HOST": address,
        "S3_SKIP_SIGNATURE_VALIDATION": "0",
        "DNS_ADDRESS": "0",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "PERSISTENCE": "0",
        "FILESYSTEM_ROOT": data_dir,
        "TMPDIR": data_dir,
    }


def serve(port: int, data_dir: str | None) -> None:
    """Replace this process with LocalStack (same pid, so TERM reaches it directly)."""
    install()
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="localstack-s3-")
        os.environ["LOCALSTACK_S3_OWN_DATA_DIR"] = "1"  # the server removes it when it stops
    os.makedirs(data_dir, exist_ok=True)
    environment = server_environment(port, data_dir)
    os.execve(str(PYTHON), [str(PYTHON), str(Path(__file__).resolve()), "_run", data_dir], environment)


def _run(data_dir: str) -> None:
    """Inside LocalStack's virtualenv: bind loopback only, then run LocalStack's own entry point."""
    import atexit
    import runpy

    from twisted.internet import endpoints

    # LocalStack's gateway builds TCP4ServerEndpoint(reactor, port) with no
    # interface, which binds 0.0.0.0 whatever GATEWAY_LISTEN says.
    class LoopbackEndpoint(endpoints.TCP4ServerEndpoint):
        def __init__(self, reactor, port, backlog=50, interface=""):
            super().__init__(reactor, port, backlog, interface or "127.0.0.1")

    endpoints.TCP4ServerEndpoint = LoopbackEndpoint
    if os.environ.pop("LOCALSTACK_S3_OWN_DATA_DIR", None):
        atexit.register(shutil.rmtree, data_dir, True)
    sys.argv = ["localstack"]
    runpy.run_module("localstack.runtime.main", run_name="__main__")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="make LocalStack's virtualenv (once) and print its path")
    serve_parser = commands.add_parser("serve", help="run LocalStack's S3 on 127.0.0.1:PORT until TERM")
    serve_parser.add_argument("--port", type=int, default=4566)
    serve_parser.add_argument(
        "--data-dir", help="where it keeps objects (default: a new temporary directory)"
    )
    run_parser = commands.add_parser("_run")  # internal: the second half of serve
    run_parser.add_argument("data_dir")
    args = parser.parse_args()
    if args.command == "install":
        print(install())
    elif args.command == "serve":
        serve(args.port, args.data_dir)
    else:
        _run(args.data_dir)


if __name__ == "__main__":
    main()
