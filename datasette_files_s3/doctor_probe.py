"""What doctor's checks are made of: the `Check` each returns, and the throwaway
probe objects they write under the source's prefix (and always delete).

Nothing here prints, and no message ever holds a key, a token or a presigned
URL (those carry the access key id).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import httpx

from . import bucket_config
from .errors import FilesS3Error

PASS, WARN, FAIL = "pass", "warn", "fail"
PROBE_DIR = ".datasette-files-s3-doctor"
PROBE_BODY = b"datasette-files-s3 doctor probe: 0123456789"


@dataclass(frozen=True)
class Check:
    """The outcome of one check: its name, status, what was found and the fix when not passing."""

    name: str
    status: str
    message: str
    fix: str | None = None


class Probe:
    """A throwaway object under the prefix: write, read, Range-read, presign, delete."""

    def __init__(self, storage, http: httpx.AsyncClient):
        self.storage = storage
        self.http = http
        self.path = f"{PROBE_DIR}/{uuid.uuid4().hex}.txt"
        self.written = False
        self.download_url: str | None = None

    async def write(self) -> Check:
        try:
            await self.storage.put_object(self.path, PROBE_BODY, "text/plain")
        except FilesS3Error as ex:
            return Check("write", FAIL, str(ex), "allow s3:PutObject on the prefix for these keys")
        self.written = True
        return Check("write", PASS, f"wrote a probe object under {self.storage.config.prefix or '/'}")

    async def read(self) -> Check:
        try:
            body = await self.storage.read_file(self.path)
        except (FilesS3Error, FileNotFoundError) as ex:
            return Check("read", FAIL, str(ex), "allow s3:GetObject on the prefix for these keys")
        if body != PROBE_BODY:
            return Check("read", FAIL, "the probe object read back different bytes")
        return Check("read", PASS, "read it back")

    async def range_read(self) -> Check:
        try:
            body = await self.storage.read_range(self.path, 10, 10)
        except (FilesS3Error, FileNotFoundError) as ex:
            return Check("range read", FAIL, str(ex))
        if body != PROBE_BODY[10:20]:
            return Check(
                "range read",
                WARN,
                f"asked for 10 bytes, got {len(body)}: the server ignores Range",
                "each preview or type check asks for the whole object and hangs up once it has the bytes it needs",
            )
        return Check("range read", PASS, "a Range request returned just those bytes")

    async def presign(self) -> Check:
        public = self.storage.config.public_endpoint_url
        try:
            self.download_url = await self.storage.download_url(self.path)
            response = await self.http.get(self.download_url)
        except httpx.HTTPError as ex:
            if public:
                return Check(
                    "presign",
                    WARN,
                    f"signed a URL for public_endpoint_url but could not fetch it from here "
                    f"({type(ex).__name__})",
                    "make sure browsers can reach public_endpoint_url",
                )
            return Check("presign", FAIL, f"could not fetch a presigned URL ({type(ex).__name__})")
        if response.status_code != 200 or response.content != PROBE_BODY:
            return Check(
                "presign",
                FAIL,
                f"a presigned GET answered HTTP {response.status_code}",
                "check the keys can sign (no clock skew, s3v4 signing) and public_endpoint_url",
            )
        return Check("presign", PASS, "a presigned GET fetched it")

    async def etag_exposed(self, origin: str) -> bool | None:
        """Whether a real cross-origin GET of the probe exposes ETag (None: could not tell)."""
        if not self.download_url:
            return None
        try:
            response = await self.http.get(self.download_url, headers={"Origin": origin})
        except httpx.HTTPError:
            return None
        exposed = bucket_config.header_list(response.headers.get("access-control-expose-headers"))
        return "etag" in exposed

    async def delete(self) -> Check:
        try:
            await self.storage.delete_file(self.path)
            left = await self.storage.head(self.path)
        except FilesS3Error as ex:
            return Check(
                "delete", FAIL, str(ex), f"allow s3:DeleteObject; remove {PROBE_DIR}/ under the prefix"
            )
        if left is not None:
            return Check("delete", FAIL, "the probe object is still there after DeleteObject")
        self.written = False
        return Check("delete", PASS, "deleted it")


def xml_error_code(body: str) -> str:
    """The `<Code>` of an S3 XML error answer, or ''."""
    match = re.search(r"<Code>([^<]+)</Code>", body or "")
    return match.group(1) if match else ""


async def delete_probes(storage, *paths: str) -> None:
    """Delete what a probe may have written; a failure here changes no verdict."""
    for path in paths:
        try:
            await storage.delete_file(path)
        except FilesS3Error:
            pass


async def post_form(http: httpx.AsyncClient, url: str, fields: dict, body: bytes) -> httpx.Response:
    """POST a form to the bucket with `body` as its file, as a browser's upload does."""
    return await http.post(url, data=fields, files={"file": ("probe.txt", body, "text/plain")})


async def try_post(http: httpx.AsyncClient, url: str, fields: dict, body: bytes) -> tuple[bool, str]:
    """POST a form to the bucket: (whether the store took it, what it answered, for the report)."""
    response = await post_form(http, url, fields, body)
    code = xml_error_code(response.text)
    return response.status_code < 300, f"HTTP {response.status_code}{' ' + code if code else ''}"


async def post_probe(storage, http: httpx.AsyncClient, sha256: str | None = None) -> int:
    """POST the probe body under a policy of ours (signing `sha256`, base64, when
    given); the store's HTTP status. Whatever the store took is deleted."""
    path = f"{PROBE_DIR}/{uuid.uuid4().hex}-post.txt"
    plan, _ = await storage.presigned_post(path, "text/plain", len(PROBE_BODY), 60, sha256=sha256)
    response = await post_form(http, plan.upload_url, plan.upload_fields, PROBE_BODY)
    if response.status_code < 300:
        await storage.delete_file(path)
    return response.status_code
