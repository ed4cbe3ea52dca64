"""Multipart through Datasette, as the bundled uploader does it, against boto3's upload_file.

    uv run python benchmarks/multipart_vs_boto3.py [--size-mib 1024] [--concurrency 6] [--rounds 2]

Starts its own `moto_server` and `datasette serve` processes, writes a random
file to a temporary directory, and uploads it both ways to the same endpoint in
the same run: boto3's `upload_file` (its default TransferConfig) and our flow
(create at Datasette, sign part URLs in batches, PUT parts in parallel straight
to S3 reading each part's ETag, complete at Datasette, which checks ListParts,
completes and HEADs the object). Prints MB/s for each and the ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import urllib3

from tests.live_servers import DatasetteProcess, live_config
from tests.s3_servers import MotoServer

MIB = 1024**2
SIGN_BATCH = 20  # as static/upload-machine.js
TIMEOUT = httpx.Timeout(600, connect=10)


class UploadFailed(RuntimeError):
    """Datasette or the bucket refused a step; the message says which and why."""


def _check(response: httpx.Response, step: str) -> dict:
    if response.status_code >= 400:
        raise UploadFailed(f"{step}: HTTP {response.status_code} {response.text[:200]}")
    return response.json()


def upload_multipart_via_datasette(
    base_url: str,
    cookie: str,
    path: str | Path,
    concurrency: int = 4,
    source: str = "s3files",
    content_type: str = "application/octet-stream",
) -> dict:
    """Upload one file as the bundled uploader does; returns the registered file's JSON.

    Parts are read from disk one at a time per worker (like `File.slice()`),
    so memory holds at most `concurrency` parts.
    """
    path = Path(path)
    size = path.stat().st_size
    api = f"/-/files-s3/upload/{source}/-/multipart/"
    with (
        httpx.Client(base_url=base_url, cookies={"ds_actor": cookie}, timeout=TIMEOUT) as datasette,
        open(path, "rb") as f,
    ):
        created = _check(
            datasette.post(
                api + "create", json={"filename": path.name, "content_type": content_type, "size": size}
            ),
            "create",
        )
        token, part_size, count = created["upload_token"], created["part_size"], created["part_count"]
        done = {p["part_number"] for p in created["parts"]}
        left = [n for n in range(1, count + 1) if n not in done]
        # urllib3 for the bytes, as boto3 itself uses: httpx's per-chunk overhead
        # on large bodies would measure the Python client, not the flow.
        s3 = urllib3.PoolManager(maxsize=concurrency, timeout=urllib3.Timeout(connect=10, read=600))
        urls: dict[int, str] = {}
        for i in range(0, len(left), SIGN_BATCH):
            signed = _check(
                datasette.post(
                    api + "sign", json={"upload_token": token, "part_numbers": left[i : i + SIGN_BATCH]}
                ),
                "sign",
            )
            urls.update({int(n): url for n, url in signed["urls"].items()})

        def put(number: int) -> str:
            data = os.pread(f.fileno(), part_size, (number - 1) * part_size)
            response = s3.request("PUT", urls[number], body=data)
            if response.status != 200 or not response.headers.get("etag"):
                raise UploadFailed(f"part {number}: HTTP {response.status} {response.data[:200]!r}")
            return response.headers["etag"]

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(put, left))
        s3.clear()
        return _check(datasette.post(api + "complete", json={"upload_token": token}), "complete")["file"]


def upload_with_boto3(client, bucket: str, path: Path, key: str) -> None:
    """boto3's own managed upload with its default TransferConfig (8 MiB parts, 10 threads)."""
    client.upload_file(str(path), bucket, key)


def client_without_checksums(moto: MotoServer):
    """A boto3 client that, like the plugin's, sends checksums only where S3 requires them.

    boto3's default declares CRC32 on CreateMultipartUpload. Without a declared
    algorithm moto 5.2 builds a second full copy of the object at complete to
    checksum it, which costs seconds per GiB: this client makes boto3 pay that
    too, so the two flows are compared like for like.
    """
    return moto.client(
        request_checksum_calculation="when_required", response_checksum_validation="when_required"
    )


def write_random_file(directory: Path, size: int) -> Path:
    path = directory / "benchmark.bin"
    block = os.urandom(16 * MIB)
    with open(path, "wb") as f:
        for offset in range(0, size, len(block)):
            f.write(block[: min(len(block), size - offset)])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=6, help="parts in flight for our client")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is kept")
    args = parser.parse_args()
    size = args.size_mib * MIB

    moto = MotoServer().start()
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    moto.create_bucket(bucket)
    datasette = DatasetteProcess(live_config(moto.source_config(bucket)))
    datasette.start()
    clients = {"boto3": moto.client(), "boto3-nocrc": client_without_checksums(moto)}
    best = {"boto3": float("inf"), "boto3-nocrc": float("inf"), "datasette": float("inf")}
    order = list(best)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = write_random_file(Path(tmp), size)
            cookie = datasette.cookie_for("bench")
            for round_number in range(args.rounds):
                # Rotate the order each round so no flow always goes first.
                for name in order[round_number % 3 :] + order[: round_number % 3]:
                    start = time.perf_counter()
                    if name in clients:
                        key = f"{name}/{uuid.uuid4().hex}.bin"
                        upload_with_boto3(clients[name], bucket, path, key)
                    else:
                        file = upload_multipart_via_datasette(datasette.url, cookie, path, args.concurrency)
                        key = f"uploads/{file['id'].removeprefix('df-')}/{path.name}"
                    seconds = time.perf_counter() - start
                    best[name] = min(best[name], seconds)
                    print(
                        f"round {round_number + 1} {name:11} {size / seconds / 1e6:7.1f} MB/s ({seconds:.1f} s)"
                    )
                    # Free moto's memory before the next upload.
                    clients["boto3"].delete_object(Bucket=bucket, Key=key)
    finally:
        datasette.stop()
        moto.stop()
    rates = {name: size / seconds / 1e6 for name, seconds in best.items()}
    print(f"boto3 upload_file (default, CRC32 declared):   {rates['boto3']:7.1f} MB/s")
    print(f"boto3 upload_file (checksums when required):   {rates['boto3-nocrc']:7.1f} MB/s")
    print(
        f"multipart via Datasette:                       {rates['datasette']:7.1f} MB/s (concurrency {args.concurrency})"
    )
    print(f"ratio to boto3 default:                        {rates['datasette'] / rates['boto3']:.2f}")
    print(
        f"ratio to boto3 with the plugin's checksum setting: {rates['datasette'] / rates['boto3-nocrc']:.2f}"
    )


if __name__ == "__main__":
    main()
