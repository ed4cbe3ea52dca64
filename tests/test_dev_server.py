"""`./dev-server.sh` as a user meets it: the links it prints work, the bucket
tools work from another terminal exactly as printed, its CORS rule is the one
`files-s3 cors` writes, and a TERM stops every process it started.

It runs with this run's kind of S3 server (DEV_S3=moto or localstack), on free
ports, with its state in a temporary directory.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.live_servers import free_port

ROOT = Path(__file__).resolve().parent.parent
READY = "Ctrl-C stops Datasette and the S3 server."


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def user_environment() -> dict:
    """A second terminal's environment: no AWS keys, nothing the dev server exported."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DEV_", "VIRTUAL_ENV"))}


def start_dev_server(state: Path, s3_kind: str):
    """Run ./dev-server.sh until it prints its links: (process, its output, its ports)."""
    ports = {"PORT": str(free_port()), "S3_PORT": str(free_port())}
    env = {**user_environment(), **ports, "DEV_S3": s3_kind, "DEV_STATE": str(state)}
    output = state.parent / "output.txt"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            ["./dev-server.sh"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 240  # a first LocalStack run installs it
    while READY not in output.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"dev-server.sh did not start:\n{output.read_text()}")
        time.sleep(0.2)
    return process, output.read_text(), {name: int(port) for name, port in ports.items()}


def kill_if_running(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory, s3_kind):
    """One dev server for the tests that only look at it."""
    started = start_dev_server(tmp_path_factory.mktemp("dev") / "state", s3_kind)
    yield started
    kill_if_running(started[0])


@pytest.fixture
def dev_server_to_stop(tmp_path, s3_kind):
    """A dev server of the test's own, for a test that stops it."""
    started = start_dev_server(tmp_path / "state", s3_kind)
    yield started
    kill_if_running(started[0])


def test_dev_server_prints_links_that_work(dev_server):
    _, text, ports = dev_server
    origin = f"http://127.0.0.1:{ports['PORT']}"
    sign_in = re.search(r"sign in as root: +(\S+)", text).group(1)
    assert sign_in.startswith(f"{origin}/-/dev-sign-in?key=")
    with httpx.Client() as browser:
        signed_in = browser.get(sign_in)
        assert signed_in.status_code == 302 and "ds_actor" in browser.cookies
        for label in ("upload files", "list files"):
            page = browser.get(re.search(rf"{label}: +(\S+)", text).group(1))
            assert page.status_code == 200, (label, page.status_code)
        assert "<datasette-files-s3-upload" in browser.get(f"{origin}/-/files-s3/upload/s3-files").text


def test_the_sign_in_link_works_again_without_a_restart(dev_server):
    """A second browser (or the same one, signed out) signs in with the same link;
    a link with another key signs nobody in."""
    _, text, ports = dev_server
    sign_in = re.search(r"sign in as root: +(\S+)", text).group(1)
    for _ in range(2):
        with httpx.Client() as browser:
            assert browser.get(sign_in).status_code == 302 and "ds_actor" in browser.cookies
            actor = browser.get(f"http://127.0.0.1:{ports['PORT']}/-/actor.json").json()["actor"]
            assert actor == {"id": "root"}
    with httpx.Client() as stranger:
        refused = stranger.get(re.sub(r"key=\w+", "key=0123456789abcdef", sign_in))
        assert refused.status_code == 403 and "ds_actor" not in stranger.cookies


def test_printed_doctor_command_works_from_another_terminal(dev_server):
    _, text, _ = dev_server
    command = re.search(r"^  (uv run datasette files-s3 doctor .*)$", text, re.M).group(1)
    result = subprocess.run(
        shlex.split(command), cwd=ROOT, env=user_environment(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[PASS] credentials: from config keys" in result.stdout
    assert re.search(
        r"\[PASS\] cors http://127\.0\.0\.1:\d+: POST and PUT allowed, ETag exposed", result.stdout
    )


def test_cors_command_finds_the_dev_servers_rule_already_there(dev_server):
    """The dev server sets its rule with `files-s3 cors`, so the command proposes nothing new."""
    _, text, ports = dev_server
    config = re.search(r"doctor -c (\S+)", text).group(1)
    origins = [f"http://127.0.0.1:{ports['PORT']}", f"http://localhost:{ports['PORT']}"]
    command = [
        "uv",
        "run",
        "datasette",
        "files-s3",
        "cors",
        "s3-files",
        "-c",
        config,
    ]
    for origin in origins:
        command += ["--origin", origin]
    result = subprocess.run(command, cwd=ROOT, env=user_environment(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The bucket already has this rule; nothing to do." in result.stdout


def test_term_stops_datasette_and_the_s3_server(dev_server_to_stop):
    process, _, ports = dev_server_to_stop
    started = descendants(process.pid)
    assert started, "dev-server.sh has no child processes"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    # The script waits for each server before it exits, so none may be left now.
    assert [pid for pid in started if alive(pid)] == []
    assert not listening(ports["PORT"]) and not listening(ports["S3_PORT"])
