"""The metadata path: how fast Datasette signs and confirms uploads, and redirects downloads.

Each level runs three phases at the same concurrency: every prepare, then
(untimed) the small uploads themselves, then every complete. Timing the
phases apart keeps S3's time out of the numbers for Datasette's own work.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx

SMALL_BODY = b"x" * 1024


@dataclass
class Latencies:
    """Requests per second and latency percentiles (ms) for one phase."""

    count: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float
    first_error: str | None = None


def summarise(
    latencies: list[float], failures: int, wall: float, first_error: str | None = None
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
    )


class Run:
    """What one phase produced: results in order, latencies, failures and the first error."""

    def __init__(self, size: int):
        self.results: list = [None] * size
        self.latencies: list[float] = []
        self.failures = 0
        self.first_error: str | None = None
        self.wall = 0.0

    def summary(self) -> Latencies:
        return summarise(self.latencies, self.failures, self.wall, self.first_error)


async def run_concurrently(items: list, concurrency: int, request) -> Run:
    """Call `await request(item)` for each item from `concurrency` workers; times each call."""
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

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall = time.perf_counter() - started
    return run


async def metadata_level(url: str, cookie: str, source: str, concurrency: int, count: int, direct: bool):
    """Prepare and complete `count` uploads at `concurrency`; returns (prepare, complete, file ids)."""
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with (
        httpx.AsyncClient(base_url=url, cookies={"ds_actor": cookie}, timeout=60, limits=limits) as client,
        httpx.AsyncClient(timeout=60, limits=limits) as s3,
    ):

        async def prepare(n):
            response = await client.post(
                f"/-/files/upload/{source}/-/prepare",
                json={"filename": f"m{n}.bin", "content_type": "application/octet-stream", "size": 1024},
            )
            response.raise_for_status()
            return response.json()

        async def send(plan):
            # Untimed: the bytes themselves, to S3 (direct) or through Datasette (proxy).
            target = plan["upload_url"] if direct else url + plan["upload_url"]
            response = await (s3 if direct else client).post(
                target,
                data=plan["upload_fields"],
                files={"file": ("m.bin", SMALL_BODY, "application/octet-stream")},
            )
            response.raise_for_status()
            return True

        async def complete(plan):
            response = await client.post(
                f"/-/files/upload/{source}/-/complete", json={"upload_token": plan["upload_token"]}
            )
            response.raise_for_status()
            return response.json()["file"]["id"]

        prepared = await run_concurrently(list(range(count)), concurrency, prepare)
        plans = [p for p in prepared.results if p]
        sent = await run_concurrently(plans, concurrency, send)
        plans = [p for p, ok in zip(plans, sent.results, strict=True) if ok]
        completed = await run_concurrently(plans, concurrency, complete)
    completed.failures += sent.failures
    completed.first_error = completed.first_error or sent.first_error
    return prepared.summary(), completed.summary(), [i for i in completed.results if i]


async def download_level(url: str, file_ids: list[str], concurrency: int, count: int) -> Latencies:
    """GET /-/files/{id}/download (not following the redirect) `count` times."""
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def download(file_id):
            response = await client.get(f"/-/files/{file_id}/download", follow_redirects=False)
            if response.status_code not in (302, 303, 307):
                raise RuntimeError(f"download answered {response.status_code}")

        items = [file_ids[n % len(file_ids)] for n in range(count)]
        return (await run_concurrently(items, concurrency, download)).summary()
