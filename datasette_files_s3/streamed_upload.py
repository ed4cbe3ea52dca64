"""A proxied upload's bytes, streamed from the request to S3 in parts.

Memory holds one or two parts at most, whatever the file's size: a part is
sent while the next is read from the client. A file smaller than one part is
written by one PutObject; a failed multipart upload is aborted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator

from datasette_files.base import FileMetadata

from .errors import BodyTooLarge
from .s3_gateway import S3Gateway

logger = logging.getLogger("datasette_files_s3")

# Proxy uploads are streamed to S3 in parts of this size: memory stays flat.
PROXY_PART_SIZE = 8 * 1024**2


async def stream_to_bucket(
    gateway: S3Gateway, path: str, stream: AsyncIterator[bytes], content_type: str, max_bytes: int | None
) -> FileMetadata:
    """Write `stream` to `path`, at most `max_bytes` (BodyTooLarge beyond, the
    partial upload aborted); the written file's metadata, with its SHA-256."""
    sha256 = hashlib.sha256()
    size = 0
    buffer = bytearray()
    upload_id = None
    parts: list[dict] = []
    part_number = 0
    pending: asyncio.Future | None = None

    async def send_part(data: bytes, number: int):
        parts.append({"PartNumber": number, "ETag": await gateway.upload_part(path, upload_id, number, data)})

    try:
        async for chunk in stream:
            sha256.update(chunk)
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise BodyTooLarge(f"The file is larger than its prepare declared: at most {max_bytes} bytes")
            buffer += chunk
            while len(buffer) >= PROXY_PART_SIZE:
                if upload_id is None:
                    upload_id = await gateway.create_multipart(path, content_type)
                data = bytes(memoryview(buffer)[:PROXY_PART_SIZE])
                del buffer[:PROXY_PART_SIZE]
                # Send this part while the next one is read from the client.
                if pending is not None:
                    await pending
                part_number += 1
                pending = asyncio.ensure_future(send_part(data, part_number))
        if pending is not None:
            await pending
            pending = None
        if upload_id is None:
            await gateway.call("put_object", Path=path, Body=bytes(buffer), ContentType=content_type)
        else:
            if buffer:
                part_number += 1
                await send_part(bytes(buffer), part_number)
            await gateway.complete_multipart(path, upload_id, parts)
    except BaseException:
        if pending is not None and not pending.done():
            pending.cancel()
        if upload_id is not None:
            try:
                await gateway.call("abort_multipart_upload", Path=path, UploadId=upload_id)
            except Exception:
                logger.warning(
                    "datasette-files source '%s': could not abort multipart upload for %s",
                    gateway.config.source,
                    path,
                )
        raise
    return FileMetadata(
        path=path,
        filename=path.rsplit("/", 1)[-1],
        content_type=content_type,
        content_hash="sha256:" + sha256.hexdigest(),
        size=size,
    )
