"""Upload one file to a datasette-files s3 source through the API, with its SHA-256.

    python upload.py https://datasette.example.com my-s3-files report.pdf --token dstok_...

The token is a Datasette API token for an actor with files-upload on the
source (`datasette create-token alice --secret ...`). The file's SHA-256 goes
to prepare, which signs it into the POST policy: a store that checks checksums
refuses any other bytes, and complete records content_hash `sha256:<hex>` once
the store reports the same value. Files up to 5 GiB (one POST); larger files
use the multipart API (README, "Multipart JSON API").
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import mimetypes
import os

import httpx


def sha256_base64(path: str) -> str:
    """The file's SHA-256 as base64, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


def answer(response: httpx.Response) -> dict:
    """The JSON answer, or SystemExit with Datasette's own error messages."""
    body = response.json()
    if not body.get("ok"):
        raise SystemExit(f"HTTP {response.status_code}: " + "; ".join(body.get("errors", [])))
    return body


def upload(base_url: str, source: str, path: str, token: str) -> dict:
    """prepare, POST the bytes to the bucket, complete; returns the registered file."""
    api = f"{base_url.rstrip('/')}/-/files/upload/{source}/-"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as datasette:
        prepared = answer(
            datasette.post(
                f"{api}/prepare",
                json={
                    "filename": os.path.basename(path),
                    "content_type": mimetypes.guess_type(path)[0] or "application/octet-stream",
                    "size": os.path.getsize(path),
                    "sha256": sha256_base64(path),
                },
            )
        )
        # Straight to the bucket, without Datasette's token: the fields first, the file last.
        with open(path, "rb") as f:
            sent = httpx.post(
                prepared["upload_url"],
                data=prepared["upload_fields"],
                files={"file": (os.path.basename(path), f)},
                timeout=None,
            )
        if sent.status_code >= 300:
            raise SystemExit(f"the bucket refused the upload: HTTP {sent.status_code}\n{sent.text}")
        return answer(datasette.post(f"{api}/complete", json={"upload_token": prepared["upload_token"]}))[
            "file"
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasette_url")
    parser.add_argument("source")
    parser.add_argument("path")
    parser.add_argument("--token", required=True, help="a Datasette API token (dstok_...)")
    args = parser.parse_args()
    file = upload(args.datasette_url, args.source, args.path, args.token)
    print(f"{file['id']} {file['content_hash']} {file['url']}")


if __name__ == "__main__":
    main()
