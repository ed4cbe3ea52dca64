"""Multipart uploads: part planning, completion checks, and the S3 steps around them.

The browser sends the bytes; the server decides the plan (part size and count),
signs part URLs on request, and at the end trusts only what S3 itself reports
(ListParts, then HEAD) before anything is registered. No HTTP here.

A multipart upload is described by an `UploadTicket` with
`kind="multipart"`; its `upload_id` and `part_size` are signed into the token,
so the plan cannot be changed by the client.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from dataclasses import dataclass, replace

from . import checksums, database, files_bridge, tickets
from .config import S3_MAX_OBJECT_SIZE
from .errors import AlreadyCompleted, StorageUnavailable, TooManyUploads, UploadForbidden, UploadRejected
from .registration import refuse_if_completed, register_if_matching
from .tickets import UploadKind, UploadRequest, UploadTicket

logger = logging.getLogger("datasette_files_s3")

MIB = 1024**2
# S3's limits: every part but the last at least 5 MiB, at most 5 GiB, 10,000 parts.
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 * 1024**3
MAX_PARTS = 10_000
# complete's body: the token, and a SHA-256 for each of up to MAX_PARTS parts
# (`"10000": "<64 hex digits>", ` is 77 bytes; base64 is shorter).
COMPLETE_MAX_BODY = 64 * 1024 + MAX_PARTS * 80
# Parts are never larger than this unless the file needs it to fit in 10,000 parts.
DEFAULT_PART_SIZE = 16 * MIB
# Most part URLs one sign request may ask for.
SIGN_BATCH_LIMIT = 100


@dataclass(frozen=True)
class PartPlan:
    """How a file of `size` bytes is cut into parts: all `part_size` but the last."""

    size: int
    part_size: int
    part_count: int

    def part_length(self, part_number: int) -> int:
        """The exact byte count part `part_number` (1-based) must have."""
        if not 1 <= part_number <= self.part_count:
            raise ValueError(f"part {part_number} is not in this plan (1 to {self.part_count})")
        if part_number < self.part_count:
            return self.part_size
        return self.size - self.part_size * (self.part_count - 1)


def preferred_part_size(multipart_threshold: int) -> int:
    """The part size a source asks for: no larger than its threshold, so a file just
    over the threshold still goes in several parallel parts; never under S3's minimum."""
    return max(MIN_PART_SIZE, min(DEFAULT_PART_SIZE, multipart_threshold))


def plan_parts(size: int, preferred: int = DEFAULT_PART_SIZE) -> PartPlan:
    """The plan for `size` bytes: `preferred` part size, raised (in whole MiB) when
    the file would otherwise need more than 10,000 parts."""
    if size < 0 or size > S3_MAX_OBJECT_SIZE:
        raise ValueError(f"size must be between 0 and {S3_MAX_OBJECT_SIZE} bytes (S3's 5 TiB limit)")
    needed = math.ceil(size / MAX_PARTS)
    part_size = max(MIN_PART_SIZE, preferred, math.ceil(needed / MIB) * MIB)
    part_size = min(part_size, MAX_PART_SIZE)
    return PartPlan(size=size, part_size=part_size, part_count=max(1, math.ceil(size / part_size)))


def plan_for(ticket: UploadTicket) -> PartPlan:
    """The plan signed into a multipart ticket."""
    return PartPlan(
        size=ticket.size,
        part_size=ticket.part_size,
        part_count=max(1, math.ceil(ticket.size / ticket.part_size)),
    )


def completion_problems(plan: PartPlan, s3_parts: list[dict]) -> list[str]:
    """What is wrong with the parts S3 holds (ListParts answer) compared with the plan."""
    problems = []
    seen = set()
    for part in sorted(s3_parts, key=lambda p: p["PartNumber"]):
        number, size = part["PartNumber"], part["Size"]
        seen.add(number)
        if not 1 <= number <= plan.part_count:
            problems.append(f"Part {number} was uploaded but the plan has only {plan.part_count} parts")
        elif size != plan.part_length(number):
            problems.append(f"Part {number} is {size} bytes but should be {plan.part_length(number)}")
    missing = [n for n in range(1, plan.part_count + 1) if n not in seen]
    if missing:
        shown = ", ".join(str(n) for n in missing[:10]) + (" ..." if len(missing) > 10 else "")
        problems.append(f"{len(missing)} of {plan.part_count} parts have not been uploaded: {shown}")
    return problems


def parse_part_numbers(value, plan: PartPlan) -> list[int]:
    """Validate a sign request's `part_numbers`: 1 to 100 distinct numbers in the plan."""
    if not isinstance(value, list) or not value:
        raise UploadRejected("part_numbers is required: a list of part numbers, e.g. [1, 2, 3]")
    if len(value) > SIGN_BATCH_LIMIT:
        raise UploadRejected(f"Ask for at most {SIGN_BATCH_LIMIT} part URLs at a time")
    numbers = []
    for number in value:
        if isinstance(number, bool) or not isinstance(number, int):
            raise UploadRejected("part_numbers must be whole numbers")
        if not 1 <= number <= plan.part_count:
            raise UploadRejected(f"Part {number} is not in this upload's plan (parts 1 to {plan.part_count})")
        if number not in numbers:
            numbers.append(number)
    return numbers


def parse_part_checksums(value, ticket: UploadTicket, numbers) -> dict[int, str]:
    """Validate `checksums` ({"1": "<base64 or hex SHA-256>", ...}) for the given
    part numbers; {} for an upload created without checksums."""
    if not ticket.checksummed:
        return {}
    if not isinstance(value, dict):
        raise UploadRejected(
            'checksums is required: each part\'s SHA-256 by part number, e.g. {"1": "<base64>"}'
        )
    found = {}
    for number in numbers:
        if str(number) not in value:
            raise UploadRejected(f"checksums has no SHA-256 for part {number}")
        found[number] = checksums.parse_sha256(value[str(number)], f"checksums[{number}]")
    return found


def checksum_problems(given: dict[int, str], s3_parts: list[dict]) -> list[str]:
    """Parts whose SHA-256 the store reports (ListParts) differs from the client's."""
    return [
        f"Part {part['PartNumber']}'s SHA-256 in the bucket is {part['ChecksumSHA256']} "
        f"but {given[part['PartNumber']]} was sent"
        for part in s3_parts
        if part.get("ChecksumSHA256") and given.get(part["PartNumber"]) not in (None, part["ChecksumSHA256"])
    ]


def check_multipart_ticket(ticket: UploadTicket, source: str) -> None:
    """The token is one for a multipart upload."""
    if ticket.kind != UploadKind.MULTIPART or not ticket.upload_id or not ticket.part_size:
        raise UploadRejected(
            f"This token is for a single-request upload: complete it at /-/files/upload/{source}/-/complete"
        )


def check_still_open(ticket: UploadTicket, now: float) -> None:
    """Parts may be signed only until the ticket expires."""
    if now > ticket.expires_at:
        raise UploadRejected("This multipart upload has expired: start the upload again")


def part_json(part: dict) -> dict:
    """One ListParts entry as our JSON answer shows it."""
    answer = {"part_number": part["PartNumber"], "size": part["Size"], "etag": part["ETag"].strip('"')}
    if part.get("ChecksumSHA256"):
        answer["checksum_sha256"] = part["ChecksumSHA256"]
    return answer


def resume_matches(ticket: UploadTicket, upload: UploadRequest, now: float) -> bool:
    """A remembered ticket fits a new create request for the same file."""
    return (
        ticket.kind == UploadKind.MULTIPART
        and ticket.filename == upload.filename
        and ticket.size == upload.size
        and ticket.content_type == upload.content_type
        and now < ticket.expires_at
    )


# --- the S3 steps ------------------------------------------------------------


def is_no_such_upload(ex: Exception) -> bool:
    """S3 no longer has this multipart upload (completed, aborted or expired).

    AWS answers NoSuchUpload; Ceph RGW answers 404 NoSuchKey to a call on an
    upload id it no longer has, which the storage layer raises as FileNotFoundError.
    """
    if isinstance(ex, FileNotFoundError):
        return True
    return isinstance(ex, StorageUnavailable) and ex.code == "NoSuchUpload"


async def unless_upload_gone(call):
    """Await an S3 call on a multipart upload: its answer, or None when S3 no
    longer has the upload (completed, aborted or expired)."""
    try:
        return await call
    except (StorageUnavailable, FileNotFoundError) as ex:
        if is_no_such_upload(ex):
            return None
        raise


async def s3_parts(storage, ticket: UploadTicket) -> list[dict]:
    """The parts S3 holds for the ticket's upload, or UploadRejected when it is gone."""
    parts = await unless_upload_gone(storage.list_parts(ticket.path, ticket.upload_id))
    if parts is None:
        raise UploadRejected(
            "This multipart upload no longer exists in the bucket (it was completed, "
            "cancelled or expired): start the upload again"
        )
    return parts


async def start(
    datasette, storage, upload: UploadRequest, actor_id: str | None, checksums_wanted: bool = False
):
    """Create a multipart upload in S3 for a new key; returns (token, ticket).

    With `checksums_wanted` (and the source's checksum: sha256), every part
    must then come with its SHA-256, which the store checks.
    """
    config = storage.config
    if upload.size == 0:
        # One POST is all an empty file needs; parts would be three S3 calls for nothing.
        raise UploadRejected(
            "Empty files are sent in one request, not in parts: "
            f"prepare them at /-/files/upload/{storage.source}/-/prepare"
        )
    tickets.check_request_allowed(config, upload, single_request=False)
    plan = plan_parts(upload.size, preferred_part_size(config.multipart_threshold))
    ticket = tickets.new_ticket(
        storage.source,
        upload,
        actor_id,
        expires_at=time.time() + config.multipart_expires,
        kind=UploadKind.MULTIPART,
        part_size=plan.part_size,
        folder=await storage.folder(),
    )
    limit = config.max_open_multipart_uploads
    with tickets.limit_as_429(ticket):
        # Early, so an actor at the limit costs S3 nothing; recording decides for good.
        await database.check_pending_limit(datasette, ticket, limit)
    algorithm = None
    if checksums_wanted and config.checksum == "sha256":
        # The store then requires, and checks, each part's SHA-256.
        algorithm = checksums.ALGORITHM
        ticket = replace(ticket, checksummed=True)
    upload_id = await storage.create_multipart(ticket.path, upload.content_type, checksum_algorithm=algorithm)
    ticket = replace(ticket, upload_id=upload_id)
    try:
        with tickets.limit_as_429(ticket):
            await database.record_pending(datasette, ticket, limit)
    except (sqlite3.Error, TooManyUploads):
        # Unrecorded, the upload would be found only by age: abort it now.
        # The refusal is what the client hears, whatever the abort does.
        try:
            await storage.abort_multipart(ticket.path, ticket.upload_id)
        except StorageUnavailable as ex:
            logger.warning("could not abort an unrecorded multipart upload, cleanup will: %s", ex)
        raise
    return tickets.sign_ticket(datasette, ticket), ticket


async def resume(datasette, storage, token, upload: UploadRequest, actor_id: str | None):
    """The remembered upload and its parts if it is still open and for this file, else None.

    AlreadyCompleted when that upload was completed: its answer was lost (the
    browser still remembers the token), and uploading the file again would
    register it twice.
    """
    try:
        ticket = tickets.read_ticket(datasette, token)
        tickets.check_ticket_use(ticket, storage.source, actor_id, time.time())
    except (UploadRejected, UploadForbidden):
        return None
    if not resume_matches(ticket, upload, time.time()) or ticket.folder not in (None, await storage.folder()):
        return None  # another file, expired, or started where the broker no longer sends us
    if await database.pending_upload(datasette, ticket.file_id) is None:
        if await files_bridge.file_registered(datasette, ticket.file_id):
            raise AlreadyCompleted(ticket.file_id)
        return None  # cancelled
    tickets.check_request_allowed(storage.config, upload, single_request=False)
    try:
        parts = await s3_parts(storage, ticket)
    except UploadRejected:
        await database.forget_pending(datasette, ticket.file_id)
        return None
    return ticket, parts


async def sign_parts(storage, ticket: UploadTicket, part_numbers: list[int], sha256s: dict):
    """Presigned PUT URLs for the given parts, each bound to its planned length
    and, given `sha256s` ({n: base64}), to its SHA-256, which the PUT must send
    as x-amz-checksum-sha256; returns ({"n": url}, expires_in)."""
    connection = await storage.connection()
    expires_in = storage.presign_seconds(connection, storage.config.upload_expires)
    plan = plan_for(ticket)
    urls = {
        str(n): await storage.presign_part(
            ticket.path, ticket.upload_id, n, plan.part_length(n), expires_in, sha256=sha256s.get(n)
        )
        for n in part_numbers
    }
    return urls, expires_in


async def discard(datasette, storage, ticket: UploadTicket) -> None:
    """Abort the upload in S3 (so no parts are left billing anyone) and forget it."""
    await unless_upload_gone(storage.abort_multipart(ticket.path, ticket.upload_id))
    await database.forget_pending(datasette, ticket.file_id)


async def abort(datasette, storage, ticket: UploadTicket) -> None:
    """Cancel an upload that has not been completed."""
    if await files_bridge.file_registered(datasette, ticket.file_id):
        raise UploadRejected("This upload has already been completed; delete the file instead")
    await discard(datasette, storage, ticket)


async def complete(datasette, storage, ticket: UploadTicket, sha256s: dict[int, str]):
    """Check S3's parts against the plan, complete, HEAD, check, register; returns the file row.

    `sha256s` ({part number: base64}, every part, for an upload created with
    checksums) is what the client hashed. Any mismatch aborts the upload,
    deletes what exists and registers nothing.
    """
    await refuse_if_completed(datasette, storage, ticket)
    parts = await unless_upload_gone(storage.list_parts(ticket.path, ticket.upload_id))
    if parts is None:
        # S3 has no such upload any more. If an earlier complete assembled it
        # and then could not register it (or is still on its way to), the
        # object is there: verify and register it now.
        return await verify_and_register(datasette, storage, ticket, sha256s)
    problems = completion_problems(plan_for(ticket), parts) + checksum_problems(sha256s, parts)
    if problems:
        await discard(datasette, storage, ticket)
        raise UploadRejected(
            problems + ["The upload was cancelled and nothing was saved; upload the file again"]
        )
    # Gone, or the key already there (If-None-Match, storage.complete_multipart), means
    # another complete for the same token got there first; the HEAD tells.
    try:
        await unless_upload_gone(storage.complete_multipart(ticket.path, ticket.upload_id, parts, sha256s))
    except StorageUnavailable as ex:
        if ex.code != "PreconditionFailed":
            raise
    return await verify_and_register(datasette, storage, ticket, sha256s)


def composite_check(ticket: UploadTicket, head: dict, sha256s: dict[int, str]):
    """(problems, content_hash) for an assembled object: its composite SHA-256 as
    the store reports it must be the one the client's part hashes make.

    A store that reports none checked nothing we can show: no content_hash.
    """
    if not ticket.checksummed:
        return [], None
    stored = checksums.store_value(head)
    if stored is None:
        return [], None
    expected = checksums.composite([sha256s[n] for n in sorted(sha256s)])
    if stored != expected:
        return [
            f"The object's composite SHA-256 in the bucket is {stored} but the parts sent make {expected}"
        ], None
    return [], checksums.composite_content_hash(stored, len(sha256s))


async def verify_and_register(datasette, storage, ticket: UploadTicket, sha256s: dict[int, str]):
    """HEAD the assembled object, check it against the ticket, register it; returns the file row."""
    head = await storage.head(ticket.path, checksum=ticket.checksummed)
    if head is None:
        raise UploadRejected(
            "This multipart upload no longer exists in the bucket (it was cancelled or "
            "expired): start the upload again"
        )
    problems, content_hash = composite_check(ticket, head, sha256s)
    return await register_if_matching(
        datasette, storage, ticket, head, "upload the file again", problems, content_hash
    )
