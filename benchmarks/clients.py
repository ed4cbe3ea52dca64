"""One function per upload path, each timing a whole upload of one file.

Every function takes the file on disk and returns an `Outcome`. The Datasette
paths count from the first request to Datasette to the last answer, so
prepare and complete are part of the cost, as they are for a user.
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

TIMEOUT = httpx.Timeout(1800, connect=10)


@dataclass
class Outcome:
    """How one upload went: its time, or the error a server answered."""

    seconds: float | None
    error: str | None = None
    key: str | None = None  # the object written, relative to the bucket

    @property
    def ok(self) -> bool:
        return self.error is None


def _failure(response: httpx.Response, step: str) -> Outcome:
    """An Outcome carrying the server's own words: JSON errors, or an HTML page's message."""
    try:
        detail = "; ".join(str(e) for e in response.json().get("errors", [])) or response.text
    except ValueError:
        detail = response.text
        if "<html" in detail.lower():
            # Datasette's error page: keep the message, not the markup.
            body = re.sub(r"(?s)<(script|style|head).*?</\1>", " ", detail)
            detail = " ".join(re.sub(r"<[^>]+>", " ", body).split())
            detail = detail.split("Error " + str(response.status_code), 1)[-1].strip()
    return Outcome(None, f"{step}: HTTP {response.status_code} {html.unescape(detail)[:120]}")


def _prepare(client: httpx.Client, source: str, file: Path, content_type: str) -> httpx.Response:
    return client.post(
        f"/-/files/upload/{source}/-/prepare",
        json={"filename": file.name, "content_type": content_type, "size": file.stat().st_size},
    )


def datasette_client(url: str, cookie: str) -> httpx.Client:
    """A keep-alive client signed in as the benchmark's actor, made once per server."""
    return httpx.Client(base_url=url, cookies={"ds_actor": cookie}, timeout=TIMEOUT)


def post_form(client: httpx.Client, url: str, fields: dict, file: Path, content_type: str) -> httpx.Response:
    """A form POST as a browser sends it (to S3, or to Datasette's proxy upload):
    the fields, then the file, streamed from disk."""
    with open(file, "rb") as body:
        return client.post(url, data=fields, files={"file": (file.name, body, content_type)})


def direct_post(client: httpx.Client, s3: httpx.Client, source: str, file: Path) -> Outcome:
    """Ours, (a): prepare at Datasette, POST the form straight to S3, complete at Datasette."""
    content_type = "application/octet-stream"
    start = time.perf_counter()
    prepared = _prepare(client, source, file, content_type)
    if prepared.status_code != 200:
        return _failure(prepared, "prepare")
    plan = prepared.json()
    posted = post_form(s3, plan["upload_url"], plan["upload_fields"], file, content_type)
    if posted.status_code not in (200, 201, 204):
        return _failure(posted, "POST to S3")
    completed = client.post(
        f"/-/files/upload/{source}/-/complete", json={"upload_token": plan["upload_token"]}
    )
    seconds = time.perf_counter() - start
    if completed.status_code != 201:
        return _failure(completed, "complete")
    return Outcome(seconds, key=plan["upload_fields"]["key"])


def raw_presigned_post(s3_client, s3: httpx.Client, bucket: str, key: str, file: Path) -> Outcome:
    """(e) the same POST and a HEAD with no Datasette at all: boto3 signs, the same HTTP client sends.

    moto parses a POST form more slowly than a PUT body, so this, not put_object,
    is the ceiling for (a) against moto.
    """
    content_type = "application/octet-stream"
    start = time.perf_counter()
    post = s3_client.generate_presigned_post(
        Bucket=bucket,
        Key=key,
        Fields={"Content-Type": content_type},
        Conditions=[{"Content-Type": content_type}],
    )
    posted = post_form(s3, post["url"], post["fields"], file, content_type)
    if posted.status_code not in (200, 201, 204):
        return _failure(posted, "POST to S3")
    # moto answers a POST before it has hashed the object and hashes it at the
    # first HEAD (about 0.45 s for 256 MiB here); (a)'s complete pays that, so this does too.
    s3_client.head_object(Bucket=bucket, Key=key)
    return Outcome(time.perf_counter() - start, key=key)


def proxy_upload(client: httpx.Client, source: str, file: Path) -> Outcome:
    """(c) and (d): datasette-files' own flow; the bytes go through Datasette's /-/upload."""
    content_type = "application/octet-stream"
    start = time.perf_counter()
    prepared = _prepare(client, source, file, content_type)
    if prepared.status_code != 200:
        return _failure(prepared, "prepare")
    plan = prepared.json()
    sent = post_form(client, plan["upload_url"], plan["upload_fields"], file, content_type)
    if sent.status_code != 200:
        return _failure(sent, "upload")
    completed = client.post(
        f"/-/files/upload/{source}/-/complete", json={"upload_token": plan["upload_token"]}
    )
    seconds = time.perf_counter() - start
    if completed.status_code not in (200, 201):
        return _failure(completed, "complete")
    file_id = completed.json()["file"]["id"]
    path = client.get(f"/-/files/{file_id}.json").json().get("path")
    return Outcome(seconds, key=path)


def boto3_put_object(s3_client, bucket: str, key: str, file: Path) -> Outcome:
    """(e) one request: boto3's put_object from the open file."""
    start = time.perf_counter()
    with open(file, "rb") as body:
        s3_client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/octet-stream")
    return Outcome(time.perf_counter() - start, key=key)


def boto3_upload_file(s3_client, bucket: str, key: str, file: Path) -> Outcome:
    """(e) boto3's managed transfer: multipart in 8 MiB parts on 10 threads above 8 MiB."""
    start = time.perf_counter()
    s3_client.upload_file(str(file), bucket, key)
    return Outcome(time.perf_counter() - start, key=key)
