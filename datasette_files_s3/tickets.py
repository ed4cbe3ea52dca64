"""The signed upload ticket: what a client may ask to upload, and who may use the answer.

An upload is described by an `UploadTicket`: which source, object key, size, type and
actor it is for, how it is sent and until when. The ticket is signed with
Datasette's secret and handed to the client as `upload_token`, so any Datasette
process that shares the secret can confirm it; nothing lives only in one
process's memory. Both flows, direct (uploads.py) and multipart (multipart.py),
issue and read tickets here, under the same per-actor limits.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from enum import Enum

from . import checksums, database, sizes
from .config import CLOCK_SKEW_SECONDS, S3_MAX_SINGLE_UPLOAD, content_type_allowed
from .errors import FolderMoved, TooManyUploads, UploadForbidden, UploadRejected
from .keys import check_content_type, check_filename, new_file_id, path_for
from .relative_paths import check_relative_path

TOKEN_NAMESPACE = "datasette-files-s3-upload"
# 2: the checksum has a field of its own (`checksummed`); version 1 tokens,
# which may still be confirmed, are read by `from_version_1`.
TOKEN_VERSION = 2
# A token may still be confirmed this long after its upload permission expired
# (the object must have been written before expiry); cleanup waits as long.
CONFIRM_GRACE_SECONDS = 3600
LONGEST_TOKEN = 8192


class UploadKind(str, Enum):
    """How the bytes go to the bucket. POST and PUT are one request each and
    are checked alike; a POST ticket may also carry a PUT for the same key
    (`upload_method: auto`), which the client sends if the store refuses POST."""

    POST = "post"
    PUT = "put"
    MULTIPART = "multipart"


@dataclass(frozen=True)
class UploadRequest:
    """What a client asks to upload: validated filename, type and size."""

    filename: str
    content_type: str
    size: int
    sha256: str | None = None  # base64, when the client sent the file's SHA-256
    relative_path: str | None = None  # its path in an uploaded folder, kept in its metadata


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
    kind: UploadKind = UploadKind.POST
    upload_id: str | None = None  # multipart only, as are part_size
    part_size: int | None = None
    # Whether the store checks a SHA-256 for this upload: the whole object's
    # (POST, PUT: `sha256`, signed in) or each part's (multipart: sent with
    # every part and compared again at complete).
    checksummed: bool = False
    sha256: str | None = None  # base64: the whole object's, POST and PUT only
    # `s3://bucket/prefix/` the key was made under; a broker may move the source later.
    folder: str | None = None
    relative_path: str | None = None  # relative_paths.py: kept in the file's metadata

    def __post_init__(self):
        # A plain "post" (from a token, or a test) becomes the member; anything else is a ValueError.
        object.__setattr__(self, "kind", UploadKind(self.kind))

    @property
    def single_request(self) -> bool:
        """Sent in one request (POST or PUT), not in parts."""
        return self.kind != UploadKind.MULTIPART


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
    relative_path = check_relative_path(data.get("relative_path"), filename)
    return UploadRequest(
        filename=filename, content_type=content_type, size=size, sha256=sha256, relative_path=relative_path
    )


def check_request_allowed(config, upload: UploadRequest, single_request: bool) -> None:
    """Enforce max_file_size and allowed_content_types before anything is signed."""
    if upload.size > config.max_file_size:
        raise UploadRejected(sizes.too_large(upload.size, config.max_file_size))
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


def new_ticket(source: str, upload: UploadRequest, actor_id: str | None, **details) -> UploadTicket:
    """A ticket for a new file: a fresh id and the object key below the prefix that goes with it."""
    file_id = new_file_id()
    return UploadTicket(
        source=source,
        file_id=file_id,
        path=path_for(file_id, upload.filename),
        filename=upload.filename,
        content_type=upload.content_type,
        size=upload.size,
        actor_id=actor_id,
        relative_path=upload.relative_path,
        **{"expires_at": 0.0, **details},
    )


# --- the token ------------------------------------------------------------------


def sign_ticket(datasette, ticket: UploadTicket) -> str:
    """The upload token: the ticket signed with Datasette's secret."""
    # Every field is a plain value: a copy of the fields, not asdict's deep one
    # (which was 13 of the 33 microseconds signing took).
    payload = {**vars(ticket), "kind": ticket.kind.value}
    return datasette.sign({"v": TOKEN_VERSION, **payload}, namespace=TOKEN_NAMESPACE)


def read_ticket(datasette, token) -> UploadTicket:
    """Verify an upload token's signature and return its ticket."""
    if not isinstance(token, str) or not token:
        raise UploadRejected("upload_token is required: send the token that prepare returned")
    if len(token) > LONGEST_TOKEN:
        raise UploadRejected("upload_token is not valid: it is far too long")
    try:
        payload = datasette.unsign(token, namespace=TOKEN_NAMESPACE)
    except Exception:
        raise UploadRejected(
            "upload_token is not valid: it was not issued here or has been altered"
        ) from None
    version = payload.pop("v", None) if isinstance(payload, dict) else None
    if version == 1:
        payload = from_version_1(payload)
    elif version != TOKEN_VERSION:
        raise UploadRejected("upload_token is not valid: prepare the upload again")
    try:
        return UploadTicket(**payload)
    except (TypeError, ValueError):
        raise UploadRejected("upload_token is not valid: prepare the upload again") from None


def from_version_1(payload: dict) -> dict:
    """A version 1 token's fields as today's: its `sha256` held a POST's digest
    or, for a multipart upload created with checksums, the algorithm "SHA256".

    Such a token can be confirmed for up to multipart_expires (at most 7 days)
    plus CONFIRM_GRACE_SECONDS after it was signed; then this can go.
    """
    sha256 = payload.pop("sha256", None)
    multipart = payload.get("kind") == UploadKind.MULTIPART.value
    return {**payload, "checksummed": bool(sha256), "sha256": None if multipart else sha256}


# --- who may use it, where and until when -------------------------------------


def check_ticket_use(ticket: UploadTicket, source: str, actor_id: str | None, now: float) -> None:
    """The token is for this source, this actor, and still within its confirm window."""
    if ticket.source != source:
        raise UploadRejected(f"upload_token belongs to source '{ticket.source}', not '{source}'")
    if ticket.actor_id != actor_id:
        raise UploadForbidden("This upload was prepared by another user; only they can complete it")
    if now > ticket.expires_at + CONFIRM_GRACE_SECONDS:
        raise UploadRejected("upload_token has expired: prepare the upload again")


async def check_same_folder(storage, ticket: UploadTicket) -> None:
    """FolderMoved if the source's credentials now point at another S3Folder than the ticket's.

    Credentials from the broker are scoped to its new folder: they can neither
    finish nor abort what was started in the old one, and the ticket's path
    would name another object key there. A token from before tickets carried a
    folder passes.
    """
    now = await storage.folder()
    if ticket.folder is not None and ticket.folder != now:
        raise FolderMoved(
            f"This upload was started in {ticket.folder}, but the credentials broker has since moved "
            f"this source to {now}, where it cannot be finished: upload the file again. What was "
            "sent is left to the bucket's AbortIncompleteMultipartUpload lifecycle rule or its owner"
        )


def forget_after(ticket: UploadTicket) -> float:
    """When the ticket's token can no longer confirm, on any of our clocks."""
    return ticket.expires_at + CONFIRM_GRACE_SECONDS + CLOCK_SKEW_SECONDS


@contextlib.contextmanager
def limit_as_429(ticket: UploadTicket):
    """Within this block, the actor's limit being reached is a TooManyUploads (429)
    that says what to finish or cancel, and when a place frees itself."""
    try:
        yield
    except database.PendingLimitReached as reached:
        wait = max(1, math.ceil(reached.frees_at - time.time()))
        where = f"source '{ticket.source}', the most it allows"
        if ticket.kind == UploadKind.MULTIPART:
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
