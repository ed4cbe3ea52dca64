"""Planning and verifying direct uploads, with no HTTP in sight.

An upload is described by an `UploadTicket`: which source, key, size, type and
actor it is for and until when. The ticket is signed with Datasette's secret
and handed to the client as `upload_token`, so any Datasette process that
shares the secret can confirm it; nothing lives only in one process's memory.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import math
import sqlite3
import time
from dataclasses import asdict, dataclass, replace

from . import checksums, database, files_bridge, single_upload
from .config import CLOCK_SKEW_SECONDS, S3_MAX_SINGLE_UPLOAD, content_type_allowed
from .errors import (
    AlreadyCompleted,
    CompletedThenDeleted,
    FolderMoved,
    ObjectChanged,
    StorageUnavailable,
    TooManyUploads,
    UploadForbidden,
    UploadRejected,
)
from .keys import check_content_type, check_filename, new_file_id, path_for
from .storage import SIGNED_PUT_CACHE_CONTROL

logger = logging.getLogger("datasette_files_s3")

TOKEN_NAMESPACE = "datasette-files-s3-upload"
TOKEN_VERSION = 1
# A token may still be confirmed this long after its upload permission expired
# (the object must have been written before expiry); cleanup waits as long.
CONFIRM_GRACE_SECONDS = 3600


@dataclass(frozen=True)
class UploadRequest:
    """What a client asks to upload: validated filename, type and size."""

    filename: str
    content_type: str
    size: int
    sha256: str | None = None  # base64, when the client sent the file's SHA-256


@dataclass(frozen=True)
class UploadTicket:
    """Everything confirmation needs to know, signed into the upload token."""

    source: str
    file_id: str
    path: str
    filename: str
    content_type: str
    size: int
    actor_id: str | None
    expires_at: float
    # "post": one request, a presigned POST or PUT (checked alike); or "multipart"
    kind: str = "post"
    upload_id: str | None = None
    part_size: int | None = None
    # The SHA-256 (base64) signed into a POST policy, or "SHA256" for a
    # multipart upload created with that checksum algorithm; None: no checksum.
    sha256: str | None = None
    # `s3://bucket/prefix/` the key was made under; a broker may move the source later.
    folder: str | None = None


def load_json(body: bytes):
    """json.loads, refusing (UploadRejected) what it accepts but Python cannot use.

    That is nesting deeper than the recursion limit, and lone surrogates
    ("\\ud800"): valid JSON escapes but no character, so no key, log line or
    database row can hold them. Text that is not JSON at all raises ValueError.
    """
    try:
        data = json.loads(body)
        # Encoding it back finds a lone surrogate wherever it hides.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise UploadRejected("Body is nested too deeply: send a flat JSON object") from None
    except UnicodeEncodeError:
        raise UploadRejected(
            "Body contains a lone surrogate (an escape such as \\ud800 that is no character): send valid text"
        ) from None
    return data


def parse_json_object(body: bytes) -> dict:
    """The request body as a JSON object, or UploadRejected saying what is wrong."""
    try:
        data = load_json(body)
    except ValueError:  # also UnicodeDecodeError: bytes that are not UTF-8
        raise UploadRejected('Body must be valid JSON, e.g. {"filename": "a.txt", "size": 3}') from None
    if not isinstance(data, dict):
        raise UploadRejected("Body must be a JSON object")
    return data


def parse_upload_request(data: dict) -> UploadRequest:
    """Validate `filename`, `content_type`, `size` and the optional `sha256` from a prepare body."""
    filename = check_filename(data.get("filename"))
    content_type = check_content_type(data.get("content_type"))
    size = data.get("size")
    if isinstance(size, bool) or not isinstance(size, int):
        raise UploadRejected("size is required: the file's size in bytes, as a whole number")
    if size < 0:
        raise UploadRejected("size cannot be negative: send the file's size in bytes (0 for an empty file)")
    sha256 = data.get("sha256")
    if sha256 is not None:
        sha256 = checksums.parse_sha256(sha256)
    return UploadRequest(filename=filename, content_type=content_type, size=size, sha256=sha256)


def check_request_allowed(config, upload: UploadRequest, single_request: bool) -> None:
    """Enforce max_file_size and allowed_content_types before anything is signed."""
    if upload.size > config.max_file_size:
        raise UploadRejected(
            f"File is too large: {upload.size} bytes, this source accepts at most {config.max_file_size}"
        )
    if single_request and upload.size > S3_MAX_SINGLE_UPLOAD:
        raise UploadRejected(
            "Files over 5 GiB cannot be sent in one request: use the multipart uploader "
            f"at /-/files-s3/upload/{config.source}"
        )
    if not content_type_allowed(upload.content_type, config.allowed_content_types):
        raise UploadRejected(
            f"Content type {upload.content_type} is not allowed here; allowed: "
            + ", ".join(config.allowed_content_types)
        )


def sign_ticket(datasette, ticket: UploadTicket) -> str:
    """The upload token: the ticket signed with Datasette's secret."""
    return datasette.sign({"v": TOKEN_VERSION, **asdict(ticket)}, namespace=TOKEN_NAMESPACE)


def read_ticket(datasette, token) -> UploadTicket:
    """Verify an upload token's signature and return its ticket."""
    if not isinstance(token, str) or not token:
        raise UploadRejected("upload_token is required: send the token that prepare returned")
    if len(token) > 8192:
        raise UploadRejected("upload_token is not valid: it is far too long")
    try:
        payload = datasette.unsign(token, namespace=TOKEN_NAMESPACE)
    except Exception:
        raise UploadRejected(
            "upload_token is not valid: it was not issued here or has been altered"
        ) from None
    if not isinstance(payload, dict) or payload.pop("v", None) != TOKEN_VERSION:
        raise UploadRejected("upload_token is not valid: prepare the upload again")
    try:
        return UploadTicket(**payload)
    except TypeError:
        raise UploadRejected("upload_token is not valid: prepare the upload again") from None


def check_ticket_use(ticket: UploadTicket, source: str, actor_id: str | None, now: float) -> None:
    """The token is for this source, this actor, and still within its confirm window."""
    if ticket.source != source:
        raise UploadRejected(f"upload_token belongs to source '{ticket.source}', not '{source}'")
    if ticket.actor_id != actor_id:
        raise UploadForbidden("This upload was prepared by another user; only they can complete it")
    if now > ticket.expires_at + CONFIRM_GRACE_SECONDS:
        raise UploadRejected("upload_token has expired: prepare the upload again")


async def check_same_folder(storage, ticket: UploadTicket) -> None:
    """FolderMoved if the source's keys now point at another S3Folder than the ticket's.

    The new keys are scoped to the new folder: they can neither finish nor
    abort what was started in the old one, and the ticket's path would name
    another key there. A token from before tickets carried a folder passes.
    """
    now = await storage.folder()
    if ticket.folder is not None and ticket.folder != now:
        raise FolderMoved(
            f"This upload was started in {ticket.folder}, but the credentials broker has since moved "
            f"this source to {now}, where it cannot be finished: upload the file again. What was "
            "sent is left to the bucket's AbortIncompleteMultipartUpload lifecycle rule or its owner"
        )


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
    if ticket.kind == "post" and ticket.sha256:
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
        # The value signed into every PUT (storage.SIGNED_PUT_CACHE_CONTROL): it
        # replaces whatever the browser would send itself (Chromium: max-age=0).
        if name == "CacheControl" and head.get(name) == SIGNED_PUT_CACHE_CONTROL:
            continue
        if head.get(name):
            problems.append(f"Uploaded object has a {header} header that was not signed for")
    if head.get("Metadata"):
        names = ", ".join(sorted(f"x-amz-meta-{key}"[:60] for key in head["Metadata"])[:5])
        problems.append(f"Uploaded object carries metadata that was not signed for ({names})")
    return problems


async def acl_problems(storage, path: str) -> list[str]:
    """A problem if the object's ACL lets anyone beyond the bucket's owner in
    (an `acl=public-read` form field the policy never named)."""
    granted = await storage.public_grants(path)
    if granted:
        return [f"Uploaded object's ACL grants {', '.join(sorted(set(granted)))} to everyone (acl was sent)"]
    return []


def new_ticket(source: str, upload: UploadRequest, actor_id: str | None, **details) -> UploadTicket:
    """A ticket for a new file: a fresh id and the key below the prefix that goes with it."""
    file_id = new_file_id()
    return UploadTicket(
        source=source,
        file_id=file_id,
        path=path_for(file_id, upload.filename),
        filename=upload.filename,
        content_type=upload.content_type,
        size=upload.size,
        actor_id=actor_id,
        **{"expires_at": 0.0, **details},
    )


async def plan_direct_upload(
    datasette, storage, upload: UploadRequest, actor_id: str | None, accepts_put: bool = False
):
    """Sign a single-request upload of a new key: a presigned POST or PUT (single_upload.py).

    Returns (token, UploadInstructions, put_fallback): with `upload_method: auto`
    a client that `accepts_put` is also given a PUT for the same key, to send
    should the store answer the POST with 501; otherwise put_fallback is None.
    """
    check_request_allowed(storage.config, upload, single_request=True)
    method = single_upload.method_for(storage)
    if method == "put" and not accepts_put:
        single_upload.refuse_form_uploader(storage)
    # A store that refuses checksum fields (checksum: none) cannot check one:
    # the client's value is then dropped, never recorded unchecked.
    sha256 = upload.sha256 if storage.config.checksum == "sha256" else None
    ticket = new_ticket(storage.source, upload, actor_id, sha256=sha256, folder=await storage.folder())
    signing = (ticket.path, upload.content_type, upload.size, storage.config.upload_expires)
    sign = storage.presigned_put if method == "put" else storage.presigned_post
    instructions, expires_at = await sign(*signing, sha256=sha256)
    put_fallback = None
    if method == "post" and accepts_put and storage.config.upload_method == "auto":
        put_fallback, put_expires_at = await storage.presigned_put(*signing, sha256=sha256)
        expires_at = max(expires_at, put_expires_at)
    ticket = replace(ticket, expires_at=expires_at)
    with limit_as_429(ticket):
        await database.record_pending(datasette, ticket, storage.config.max_pending_uploads)
    return sign_ticket(datasette, ticket), instructions, put_fallback


@contextlib.contextmanager
def limit_as_429(ticket: UploadTicket):
    """Within this block, the actor's limit being reached is a TooManyUploads (429)
    that says what to finish or cancel, and when a place frees itself."""
    try:
        yield
    except database.PendingLimitReached as reached:
        wait = max(1, math.ceil(reached.frees_at - time.time()))
        where = f"source '{ticket.source}', the most it allows"
        if ticket.kind == "multipart":
            message = (
                f"You already have {reached.limit} multipart uploads open on {where}: finish or "
                "cancel some of them (the uploader's Cancel button, or POST .../multipart/abort "
                f"with their upload_token), or wait {wait} seconds until the oldest expires"
            )
        else:
            message = (
                f"You already have {reached.limit} uploads prepared but not completed on {where}: "
                "finish them (send each file, then call complete) or wait "
                f"{wait} seconds until the oldest expires"
            )
        raise TooManyUploads(message, retry_after=wait) from None


async def confirm_upload(datasette, storage, ticket: UploadTicket):
    """HEAD the object, check it against the ticket, register it; returns the file row.

    A mismatching object is deleted and nothing is registered.
    """
    await refuse_if_completed(datasette, storage, ticket)
    head = await storage.head(ticket.path, checksum=bool(ticket.sha256))
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
    return await register_if_matching(
        datasette, storage, ticket, head, "prepare the upload again", await acl_problems(storage, ticket.path)
    )


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


def forget_after(ticket: UploadTicket) -> float:
    """When the ticket's token can no longer confirm, on any of our clocks."""
    return ticket.expires_at + CONFIRM_GRACE_SECONDS + CLOCK_SKEW_SECONDS


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
    caller, a POST's store-checked SHA-256 is recorded, or nothing.
    """
    problems = object_problems(ticket, head) + list(extra_problems)
    if problems:
        await storage.delete_file(ticket.path)
        await database.forget_pending(datasette, ticket.file_id)
        raise UploadRejected(problems + [f"The uploaded object was deleted; {start_again}"])
    if content_hash is None and ticket.kind == "post" and ticket.sha256:
        content_hash = checksums.content_hash(ticket.sha256)
    await register(datasette, storage, ticket, head, content_hash)
    return await files_bridge.file_record(datasette, ticket.file_id)


async def register(datasette, storage, ticket: UploadTicket, head: dict, content_hash: str | None) -> None:
    """Record a verified object in datasette-files and forget it as pending.

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
                "key": connection.prefix + ticket.path,
                "etag": (head.get("ETag") or "").strip('"'),
                # Until then the POST policy could write the key again: downloads check it.
                **({"writable_until": ticket.expires_at} if ticket.kind == "post" else {}),
            }
        },
    )
    try:
        await database.register_and_forget(datasette, file_insert, ticket, forget_after(ticket))
    except sqlite3.IntegrityError:
        raise AlreadyCompleted(ticket.file_id) from None


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
