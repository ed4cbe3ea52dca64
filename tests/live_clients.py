"""Synchronous clients that drive a live Datasette as a browser would.

Used by the reliability tests and by benchmarks/run.py, so both exercise the
same requests: prepare / POST to the bucket / complete for direct uploads, and
create / sign / PUT parts / complete for multipart.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

TIMEOUT = httpx.Timeout(1800, connect=10)
MULTIPART = "/-/files-s3/upload/{source}/-/multipart/"


class UploadFailed(Exception):
    """A step answered something other than success; carries the response."""

    def __init__(self, step: str, response: httpx.Response):
        super().__init__(f"{step}: HTTP {response.status_code} {response.text[:300]}")
        self.step = step
        self.response = response


def signed_in(url: str, cookie: str | None) -> httpx.Client:
    """A keep-alive client for one Datasette, signed in with a `ds_actor` cookie if given."""
    return httpx.Client(base_url=url, cookies={"ds_actor": cookie} if cookie else {}, timeout=TIMEOUT)


def expect(response: httpx.Response, step: str, *statuses: int) -> httpx.Response:
    if response.status_code not in statuses:
        raise UploadFailed(step, response)
    return response


def prepare(client: httpx.Client, source: str, filename: str, size: int, content_type: str) -> dict:
    response = client.post(
        f"/-/files/upload/{source}/-/prepare",
        json={"filename": filename, "content_type": content_type, "size": size},
    )
    return expect(response, "prepare", 200).json()


def post_to_bucket(http: httpx.Client, plan: dict, content, filename: str, content_type: str) -> None:
    """The presigned form POST; `content` is bytes or an open file (streamed)."""
    response = http.post(
        plan["upload_url"], data=plan["upload_fields"], files={"file": (filename, content, content_type)}
    )
    expect(response, "POST to bucket", 200, 201, 204)


def complete(client: httpx.Client, source: str, token: str) -> httpx.Response:
    return client.post(f"/-/files/upload/{source}/-/complete", json={"upload_token": token})


def direct_upload(
    client: httpx.Client,
    http: httpx.Client,
    source: str,
    content: bytes,
    filename: str = "file.bin",
    content_type: str = "application/octet-stream",
) -> dict:
    """The whole direct flow; returns the registered file's JSON."""
    plan = prepare(client, source, filename, len(content), content_type)
    post_to_bucket(http, plan, content, filename, content_type)
    return expect(complete(client, source, plan["upload_token"]), "complete", 201).json()["file"]


def multipart_call(client: httpx.Client, source: str, action: str, body: dict) -> httpx.Response:
    return client.post(MULTIPART.format(source=source) + action, json=body)


def multipart_upload(
    client: httpx.Client,
    http: httpx.Client,
    source: str,
    content: bytes | Path,
    filename: str = "big.bin",
    content_type: str = "application/octet-stream",
    workers: int = 4,
    attempts: int = 3,
    before_part: Callable[[int], None] | None = None,
) -> dict:
    """create, sign, PUT every part (each retried up to `attempts` times), complete.

    `before_part(n)` runs before part n is sent: the tests use it to restart
    Datasette in the middle of an upload. Returns the registered file's JSON.
    """
    size = content.stat().st_size if isinstance(content, Path) else len(content)
    created = expect(
        multipart_call(
            client, source, "create", {"filename": filename, "content_type": content_type, "size": size}
        ),
        "multipart create",
        200,
    ).json()
    token, part_size, count = created["upload_token"], created["part_size"], created["part_count"]

    def read(number: int) -> bytes:
        offset = (number - 1) * part_size
        if isinstance(content, bytes):
            return content[offset : offset + part_size]
        with open(content, "rb") as f:
            f.seek(offset)
            return f.read(part_size)

    def send(number: int, url: str) -> None:
        if before_part:
            before_part(number)
        body = read(number)
        for attempt in range(1, attempts + 1):
            response = http.put(url, content=body)
            if response.status_code == 200:
                return
            if attempt == attempts:
                raise UploadFailed(f"PUT part {number}", response)

    numbers = list(range(1, count + 1))
    for batch_start in range(0, count, 100):
        batch = numbers[batch_start : batch_start + 100]
        urls = expect(
            multipart_call(client, source, "sign", {"upload_token": token, "part_numbers": batch}),
            "multipart sign",
            200,
        ).json()["urls"]
        if workers <= 1 or before_part:
            for n in batch:
                send(n, urls[str(n)])
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(send, batch, [urls[str(n)] for n in batch]))
    done = multipart_call(client, source, "complete", {"upload_token": token})
    return expect(done, "multipart complete", 201).json()["file"]
