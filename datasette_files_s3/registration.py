"""Registering an uploaded object: the one step both flows end with.

The direct flow (uploads.py) and the multipart flow (multipart.py) each find
the object their ticket names and HEAD it; from there it is the same: a token
registers its file once (`refuse_if_completed`, called before any S3 work),
and an object that differs from what was signed for is deleted, never
registered (`register_if_matching`).
"""

from __future__ import annotations

import logging
import sqlite3

from . import checksums, database, files_bridge
from .config import CLOCK_SKEW_SECONDS
from .errors import AlreadyCompleted, CompletedThenDeleted, StorageUnavailable, UploadRejected
from .s3_presign import SIGNED_PUT_CACHE_CONTROL
from .tickets import UploadTicket, forget_after

logger = logging.getLogger("datasette_files_s3")


async def refuse_if_completed(datasette, storage, ticket: UploadTicket) -> None:
    """AlreadyCompleted if this token has registered its file before, even if that
    file has been deleted since.

    After a delete, the key may hold a fresh copy sent again with the same
    still-valid policy: it can never be registered, so it is deleted here (and,
    should S3 fail now or a copy arrive later, by cleanup).
    """
    state = await database.completion_state(datasette, ticket.file_id)
    if state == "registered":
        raise AlreadyCompleted(ticket.file_id)
    if state == "deleted":
        try:
            await storage.delete_file(ticket.path)
        except StorageUnavailable as ex:
            logger.warning("a deleted file's key could not be cleared now, cleanup will: %s", ex)
        raise CompletedThenDeleted(ticket.file_id)


async def register_if_matching(
    datasette,
    storage,
    ticket: UploadTicket,
    head: dict,
    start_again: str,
    extra_problems: list[str] = (),
    content_hash: str | None = None,
):
    """Register the object HEAD describes if it matches the ticket; returns the file row.

    A mismatching object is deleted, nothing is registered, and the rejection
    ends by telling the user to `start_again`. Without a `content_hash` from the
    caller, a POST's or PUT's store-checked SHA-256 is recorded, or nothing.
    """
    problems = object_problems(ticket, head) + list(extra_problems)
    if problems:
        await storage.delete_file(ticket.path)
        await database.forget_pending(datasette, ticket.file_id)
        raise UploadRejected(problems + [f"The uploaded object was deleted; {start_again}"])
    if content_hash is None and ticket.sha256:
        content_hash = checksums.content_hash(ticket.sha256)
    return await register(datasette, storage, ticket, head, content_hash)


def object_problems(ticket: UploadTicket, head: dict) -> list[str]:
    """What is wrong with the uploaded object, compared with what was signed for."""
    problems = []
    actual_size = head.get("ContentLength")
    if actual_size != ticket.size:
        problems.append(f"Uploaded object is {actual_size} bytes but {ticket.size} were declared")
    actual_type = (head.get("ContentType") or "").split(";")[0].strip().lower()
    if actual_type != ticket.content_type:
        problems.append(
            f"Uploaded object has content type {actual_type or '(none)'} but {ticket.content_type} was declared"
        )
    if ticket.sha256:
        stored = checksums.store_value(head)
        if stored != ticket.sha256:
            problems.append(
                f"Uploaded object's SHA-256 is {stored or '(not reported by the store)'} "
                f"but {ticket.sha256} was signed for"
            )
    modified = head.get("LastModified")
    if modified is not None and modified.timestamp() > ticket.expires_at + CLOCK_SKEW_SECONDS:
        problems.append("Uploaded object was written after the upload permission expired")
    return problems + unsigned_header_problems(head)


def unsigned_header_problems(head: dict) -> list[str]:
    """What the object carries that we never sign for, as HEAD shows it.

    A POST form may carry fields its policy does not name, and a presigned URL
    headers it does not sign; stores such as LocalStack keep them. Each of
    these changes what a download is: a storage class that must be restored
    first, an encoding the browser undoes (the bytes then differ from
    content_hash), a redirect, headers and metadata nobody chose.
    """
    problems = []
    storage_class = head.get("StorageClass")
    if storage_class and storage_class != "STANDARD":
        problems.append(
            f"Uploaded object was stored as {storage_class}, not STANDARD: it could not be downloaded"
        )
    encoding = head.get("ContentEncoding")
    if encoding and encoding.lower() != "identity":
        problems.append(
            f"Uploaded object has Content-Encoding {encoding[:40]}: a download would not be the bytes uploaded"
        )
    if head.get("WebsiteRedirectLocation"):
        problems.append("Uploaded object redirects elsewhere (x-amz-website-redirect-location was sent)")
    for name, header in (("ContentDisposition", "Content-Disposition"), ("CacheControl", "Cache-Control")):
        # The value signed into every PUT (s3_presign.SIGNED_PUT_CACHE_CONTROL): it
        # replaces whatever the browser would send itself (Chromium: max-age=0).
        if name == "CacheControl" and head.get(name) == SIGNED_PUT_CACHE_CONTROL:
            continue
        if head.get(name):
            problems.append(f"Uploaded object has a {header} header that was not signed for")
    if head.get("Metadata"):
        names = ", ".join(sorted(f"x-amz-meta-{name}"[:60] for name in head["Metadata"])[:5])
        problems.append(f"Uploaded object carries metadata that was not signed for ({names})")
    return problems


async def register(datasette, storage, ticket: UploadTicket, head: dict, content_hash: str | None):
    """Record a verified object in datasette-files and forget it as pending; returns the file row.

    `content_hash` is a digest the store checked (and we compared), or None.
    """
    connection = await storage.connection()
    file_insert = files_bridge.file_row_insert(
        file_id=ticket.file_id,
        source=ticket.source,
        path=ticket.path,
        filename=ticket.filename,
        content_type=ticket.content_type,
        size=ticket.size,
        actor_id=ticket.actor_id,
        content_hash=content_hash,
        metadata={
            "s3": {
                "bucket": connection.bucket,
                "key": connection.key(ticket.path),
                "etag": (head.get("ETag") or "").strip('"'),
                # Until then the signed POST or PUT could write the key again: downloads check it.
                **({"writable_until": ticket.expires_at} if ticket.single_request else {}),
            },
            **({"relative_path": ticket.relative_path} if ticket.relative_path else {}),
        },
    )
    try:
        return await database.register_and_forget(datasette, file_insert, ticket, forget_after(ticket))
    except sqlite3.IntegrityError:
        raise AlreadyCompleted(ticket.file_id) from None
