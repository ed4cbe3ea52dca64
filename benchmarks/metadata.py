"""The metadata path: how fast Datasette signs and confirms uploads, and redirects downloads.

Each level runs three phases at the same concurrency: every prepare, then
(untimed) the small uploads themselves, then every complete. Timing the
phases apart keeps S3's time out of the numbers for Datasette's own work.
Given the Datasette process's id, each phase also reports the CPU that
process spent per request (all its threads): unlike requests/s, that barely
moves when something else on the machine wants the cores too.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiohttp

SMALL_BODY = b"x" * 1024


def process_cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU seconds a process has used so far (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Latencies:
    """Requests per second and latency percentiles (ms) for one phase."""

    count: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float
    first_error: str | None = None
    cpu_ms: float | None = None  # the server process's CPU per request, when its pid was given


def summarise(
    latencies: list[float],
    failures: int,
    wall: float,
    first_error: str | None = None,
    cpu_seconds: float | None = None,
) -> Latencies:
    ordered = sorted(latencies) or [float("nan")]
    p99_index = min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))
    return Latencies(
        count=len(latencies),
        failures=failures,
        rps=len(latencies) / wall if wall else 0.0,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[p99_index] * 1000,
        first_error=first_error,
        cpu_ms=cpu_seconds * 1000 / len(latencies) if cpu_seconds is not None and latencies else None,
    )


class Run:
    """What one phase produced: results in order, latencies, failures and the first error."""

    def __init__(self, size: int):
        self.results: list = [None] * size
        self.latencies: list[float] = []
        self.failures = 0
        self.first_error: str | None = None
        self.wall = 0.0
        self.cpu_seconds: float | None = None

    def summary(self) -> Latencies:
        return summarise(self.latencies, self.failures, self.wall, self.first_error, self.cpu_seconds)


async def run_concurrently(items: list, concurrency: int, request, server_pid: int | None = None) -> Run:
    """Call `await request(item)` for each item from `concurrency` workers; times each
    call, and the CPU the process `server_pid` spends meanwhile."""
    queue = list(enumerate(items))
    run = Run(len(items))

    async def worker():
        while queue:
            index, item = queue.pop()
            start = time.perf_counter()
            try:
                run.results[index] = await request(item)
                run.latencies.append(time.perf_counter() - start)
            except Exception as ex:
                run.failures += 1
                if run.first_error is None:
                    detail = getattr(getattr(ex, "response", None), "text", "")[:200]
                    run.first_error = f"{type(ex).__name__}: {ex} {detail}".strip()[:300]

    started, cpu_before = time.perf_counter(), process_cpu_seconds(server_pid)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall = time.perf_counter() - started
    cpu_after = process_cpu_seconds(server_pid)
    if cpu_before is not None and cpu_after is not None:
        run.cpu_seconds = cpu_after - cpu_before
    return run


def session(concurrency: int, base_url: str | None = None, cookie: str | None = None):
    """A keep-alive aiohttp session for `concurrency` workers, signed in when given a cookie.

    aiohttp rather than httpx: measured here, httpx's AsyncClient spends about
    3 ms of its own per request (a bare uvicorn app answered 207 req/s through
    it at 16 clients and 5,600 through aiohttp), which hid the servers' numbers.
    """
    return aiohttp.ClientSession(
        base_url=base_url,
        headers={"Cookie": f"ds_actor={cookie}"} if cookie else None,
        connector=aiohttp.TCPConnector(limit=concurrency + 4),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def checked(response: aiohttp.ClientResponse, expected: tuple[int, ...]) -> bytes:
    """The body, or RuntimeError naming the status and the server's words."""
    body = await response.read()
    if response.status not in expected:
        raise RuntimeError(f"HTTP {response.status}: {body[:200].decode(errors='replace')}")
    return body


async def metadata_level(
    url: str,
    cookie: str,
    source: str,
    concurrency: int,
    count: int,
    direct: bool,
    server_pid: int | None = None,
):
    """Prepare and complete `count` uploads at `concurrency`; returns (prepare, complete, file ids)."""
    async with session(concurrency, url, cookie) as client, session(concurrency) as s3:

        async def prepare(n):
            body = {"filename": f"m{n}.bin", "content_type": "application/octet-stream", "size": 1024}
            async with client.post(f"/-/files/upload/{source}/-/prepare", json=body) as response:
                return json.loads(await checked(response, (200,)))

        async def send(plan):
            # Untimed: the bytes themselves, to S3 (direct) or through Datasette (proxy).
            form = aiohttp.FormData()
            for name, value in plan["upload_fields"].items():
                form.add_field(name, value)
            form.add_field("file", SMALL_BODY, filename="m.bin", content_type="application/octet-stream")
            sender = s3 if direct else client
            async with sender.post(plan["upload_url"], data=form) as response:
                await checked(response, (200, 201, 204))
            return True

        async def complete(plan):
            body = {"upload_token": plan["upload_token"]}
            async with client.post(f"/-/files/upload/{source}/-/complete", json=body) as response:
                return json.loads(await checked(response, (200, 201)))["file"]["id"]

        prepared = await run_concurrently(list(range(count)), concurrency, prepare, server_pid)
        plans = [p for p in prepared.results if p]
        sent = await run_concurrently(plans, concurrency, send)
        plans = [p for p, ok in zip(plans, sent.results, strict=True) if ok]
        completed = await run_concurrently(plans, concurrency, complete, server_pid)
    completed.failures += sent.failures
    completed.first_error = completed.first_error or sent.first_error
    return prepared.summary(), completed.summary(), [i for i in completed.results if i]


async def get_level(
    url: str, paths: list[str], concurrency: int, server_pid: int | None = None, cookie: str | None = None
) -> Latencies:
    """GET each path (redirects not followed) from `concurrency` workers; any 2xx or 3xx counts."""
    async with session(concurrency, url, cookie) as client:

        async def get(path):
            async with client.get(path, allow_redirects=False) as response:
                await checked(response, (200, 302, 303, 307))

        return (await run_concurrently(paths, concurrency, get, server_pid)).summary()


async def download_level(
    url: str, file_ids: list[str], concurrency: int, count: int, server_pid: int | None = None
) -> Latencies:
    """GET /-/files/{id}/download (not following the redirect) `count` times."""
    paths = [f"/-/files/{file_ids[n % len(file_ids)]}/download" for n in range(count)]
    return await get_level(url, paths, concurrency, server_pid)


async def floor_level(url: str, concurrency: int, count: int, server_pid: int | None = None) -> Latencies:
    """Datasette's own floor: GET /-/actor.json, which no plugin touches, `count` times."""
    return await get_level(url, ["/-/actor.json"] * count, concurrency, server_pid)


async def permission_floor_level(
    url: str, cookie: str, concurrency: int, count: int, server_pid: int | None = None
) -> Latencies:
    """What any permission-checked request costs Datasette: GET /-/settings.json
    signed in as prepare's actor, `count` times. Datasette's view does exactly one
    `datasette.allowed` check (view-instance) and answers a small dict; prepare and
    complete each make one (files-upload) before any work of ours."""
    return await get_level(url, ["/-/settings.json"] * count, concurrency, server_pid, cookie)


def s3_head_level(s3_client, bucket: str, key: str, concurrency: int, count: int) -> Latencies:
    """boto3 HEADs of one small object from `concurrency` threads: what every
    complete must pay S3, whichever plugin, before Datasette does anything."""
    latencies: list[float] = []

    def head(_):
        start = time.perf_counter()
        s3_client.head_object(Bucket=bucket, Key=key)
        latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(head, range(count)))
    return summarise(latencies, 0, time.perf_counter() - started)
