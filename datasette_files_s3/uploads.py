"""The direct flow: one presigned POST or PUT per file, planned and confirmed, with no HTTP in sight.

Prepare signs a ticket (tickets.py) and the request that writes its object key;
confirm HEADs the object and hands it to registration.py. Until the signed
request expires it could write the key again, so downloads check such a file
(`check_unchanged`) until that settles.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import replace

from . import checksums, database, files_bridge, single_upload
from .config import CLOCK_SKEW_SECONDS
from .errors import ObjectChanged, UploadRejected
from .registration import refuse_if_completed, register_if_matching
from .tickets import (
    UploadKind,
    UploadRequest,
    UploadTicket,
    check_request_allowed,
    limit_as_429,
    new_ticket,
    sign_ticket,
)


async def acl_problems(storage, path: str) -> list[str]:
    """A problem if the object's ACL lets anyone beyond the bucket's owner in
    (an `acl=public-read` form field the policy never named)."""
    granted = await storage.public_grants(path)
    if granted:
        return [f"Uploaded object's ACL grants {', '.join(sorted(set(granted)))} to everyone (acl was sent)"]
    return []


async def plan_direct_upload(
    datasette, storage, upload: UploadRequest, actor_id: str | None, accepts_put: bool = False
):
    """Sign a single-request upload of a new key: a presigned POST or PUT (single_upload.py).

    Returns (token, UploadInstructions, put_fallback): with `upload_method: auto`
    a client that `accepts_put` is also given a PUT for the same key, to send
    should the store answer the POST with 501, until a POST has been confirmed
    on this source; otherwise put_fallback is None.
    """
    check_request_allowed(storage.config, upload, single_request=True)
    method = single_upload.method_for(storage)
    if method == "put" and not accepts_put:
        single_upload.refuse_form_uploader(storage)
    # A store that refuses checksum fields (checksum: none) cannot check one:
    # the client's value is then dropped, never recorded unchecked.
    sha256 = upload.sha256 if storage.config.checksum == "sha256" else None
    ticket = new_ticket(
        storage.source,
        upload,
        actor_id,
        kind=UploadKind.PUT if method == "put" else UploadKind.POST,
        checksummed=sha256 is not None,
        sha256=sha256,
        folder=await storage.folder(),
    )
    signing = (ticket.path, upload.content_type, upload.size, storage.config.upload_expires)
    sign = storage.presigned_put if method == "put" else storage.presigned_post
    instructions, expires_at = await sign(*signing, sha256=sha256)
    put_fallback = None
    if method == "post" and single_upload.signs_put_fallback(storage, accepts_put):
        put_fallback, put_expires_at = await storage.presigned_put(*signing, sha256=sha256)
        expires_at = max(expires_at, put_expires_at)
    ticket = replace(ticket, expires_at=expires_at)
    with limit_as_429(ticket):
        await database.record_pending(datasette, ticket, storage.config.max_pending_uploads)
    return sign_ticket(datasette, ticket), instructions, put_fallback


async def confirm_upload(datasette, storage, ticket: UploadTicket):
    """HEAD the object, check it against the ticket, register it; returns the file row.

    A mismatching object is deleted and nothing is registered.
    """
    await refuse_if_completed(datasette, storage, ticket)
    head = await storage.head(ticket.path, checksum=ticket.checksummed)
    if head is None:
        if time.time() > ticket.expires_at + CLOCK_SKEW_SECONDS:
            raise UploadRejected(
                "upload_token has expired and no file was uploaded: prepare the upload again"
            )
        raise UploadRejected("No file has been uploaded for this token yet: upload it to upload_url first")
    # Read back only an object of the signed size: on a store that ignores the
    # policy's size range, an oversized one is refused below without reading it.
    if ticket.sha256 and checksums.store_value(head) is None and head.get("ContentLength") == ticket.size:
        head = {**head, "ChecksumSHA256": await sha256_read_back(storage, ticket.path)}
    row = await register_if_matching(
        datasette, storage, ticket, head, "prepare the upload again", await acl_problems(storage, ticket.path)
    )
    if ticket.kind == UploadKind.POST:
        single_upload.note_post_accepted(storage, head)
    return row


async def sha256_read_back(storage, path: str) -> str:
    """The object's SHA-256 (base64), hashed here as it streams from the bucket.

    For a store that keeps no checksum for a POST (moto, some S3-compatible
    stores): the hash is then recorded only because Datasette itself read the
    bytes back. At most a single-POST object, so at most multipart_threshold.
    """
    digest = hashlib.sha256()
    async for chunk in storage.stream_file(path):
        digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


async def check_unchanged(datasette, storage, row, now: float) -> None:
    """ObjectChanged if a file's object may have been written again and was.

    A confirmed single-POST key can be written again with its policy until the
    policy expires. A store that checks the policy's SHA-256 refuses other
    bytes; one that enforces nothing (moto, some S3-compatible stores) takes
    them, as does any store when the client signed no SHA-256. So until then
    (plus clock skew) each download compares the object's size and ETag with
    what confirm recorded. The answer then settles for good, recorded in the
    file's metadata: the first check after the policy's expiry, or the first
    that finds other bytes, is the last store round trip this file costs. A
    file found changed is never served again, at any age.

    Not If-Match on the presigned GET instead: SigV4 signs it as a header
    (S3 has no query parameter for it) and a browser following our 302 cannot
    send it, so every download would fail its signature.
    """
    try:
        recorded = json.loads(row["metadata"] or "{}").get("s3") or {}
    except (TypeError, ValueError, AttributeError):
        return
    until = recorded.get("writable_until")
    if not isinstance(until, (int, float)) or recorded.get("settled") == "unchanged":
        return  # a multipart or proxied key: no URL of ours can write it again
    if recorded.get("settled") != "changed":
        head = await storage.head(row["path"])
        if head is None:
            return  # gone: the download answers that itself
        etag = (head.get("ETag") or "").strip('"')
        changed = head.get("ContentLength") != row["size"] or etag != recorded.get("etag")
        if changed or now > until + CLOCK_SKEW_SECONDS:
            await files_bridge.record_s3_metadata(
                datasette, row["id"], {**recorded, "settled": "changed" if changed else "unchanged"}
            )
        if not changed:
            return
    raise ObjectChanged(
        f"The object in the bucket is no longer the file that was uploaded as {row['filename']} "
        f"(its size or ETag changed after it was confirmed): it is not served. Delete the file "
        "and upload it again"
    )
