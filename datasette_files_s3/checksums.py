"""SHA-256 checksums: the forms a client sends, S3 takes and content_hash records.

Pure functions, no S3 and no HTTP. S3 speaks base64 of the 32 raw digest
bytes (`x-amz-checksum-sha256`); `content_hash` speaks lowercase hex, as
datasette-files' own uploads do (`sha256:<hex>`).

A multipart object has no whole-file SHA-256 in S3: the store checks each
part, and its object checksum is the SHA-256 of the parts' raw digests, one
after another ("composite"). That is what a multipart upload records, in a
form that names itself: `sha256-composite:<hex>-<part count>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from .errors import UploadRejected

ALGORITHM = "SHA256"
_HEX_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/]{43}=$")


def parse_sha256(value, what: str = "sha256") -> str:
    """A client's SHA-256 (64 hex digits, or base64 of the 32 bytes) as base64."""
    if isinstance(value, str) and _HEX_RE.match(value):
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    if isinstance(value, str) and _BASE64_RE.match(value):
        try:
            if len(base64.b64decode(value, validate=True)) == 32:
                return value
        except binascii.Error:
            pass
    raise UploadRejected(
        f"{what} must be the SHA-256 of the bytes: 64 hex digits, or base64 of the 32 digest bytes "
        "(as x-amz-checksum-sha256 takes it)"
    )


def to_hex(value: str) -> str:
    """Base64 digest bytes as lowercase hex."""
    return base64.b64decode(value).hex()


def composite(part_checksums: list[str]) -> str:
    """S3's composite checksum of a multipart object (base64, no "-N"), from its
    parts' base64 SHA-256s in part order."""
    joined = b"".join(base64.b64decode(value) for value in part_checksums)
    return base64.b64encode(hashlib.sha256(joined).digest()).decode("ascii")


def store_value(head: dict) -> str | None:
    """The object's SHA-256 a HEAD with ChecksumMode=ENABLED reports, without the
    "-N" part count S3 appends to a composite (some stores do not)."""
    value = head.get("ChecksumSHA256")
    if not isinstance(value, str) or not value:
        return None
    return value.split("-", 1)[0]


def content_hash(value: str) -> str:
    """content_hash for a single-request object whose SHA-256 the store checked."""
    return "sha256:" + to_hex(value)


def composite_content_hash(value: str, part_count: int) -> str:
    """content_hash for a multipart object: its composite, naming itself."""
    return f"sha256-composite:{to_hex(value)}-{part_count}"
