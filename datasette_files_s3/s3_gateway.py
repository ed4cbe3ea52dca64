"""The S3 gateway: named S3 operations on one source's bucket and prefix.

One boto3 client per source, rebuilt only when its credentials change. An
operation names an object by its path under the prefix; `Connection.key` is
the one place the prefix is put in front. Every blocking call runs in one
thread pool (`_in_pool`), so the event loop never waits on S3; `S3Gateway.run`
is that with boto3's error made ours (s3_errors.py). `raw` is doctor's way in:
the same calls, with S3's own answers and errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import boto3
from botocore.config import Config

from .bucket_check import BucketCheck
from .config import S3SourceConfig
from .credentials import Credentials, CredentialsProvider
from .errors import BucketUnusable, StorageUnavailable
from .s3_errors import translate_error

# Blocking S3 calls are I/O: more threads than cores is right here.
_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="datasette-files-s3")


async def _in_pool(function, *args):
    """The one runner: a blocking call (boto3, a response body's read) in our thread pool."""
    return await asyncio.get_running_loop().run_in_executor(_executor, function, *args)


@dataclass(frozen=True)
class Connection:
    """A boto3 client bound to one set of credentials and the bucket and prefix they serve."""

    credentials: Credentials
    client: object
    presign_client: object
    bucket: str
    prefix: str

    def key(self, path: str) -> str:
        """The object key for a path under the prefix."""
        return self.prefix + path

    def path(self, key: str) -> str:
        """The path under the prefix for an object key listed under it."""
        return key[len(self.prefix) :]

    def params(self, params: dict) -> dict:
        """boto3 parameters for this bucket: `Bucket` filled in, `Path` made the
        object's `Key` and `Under` the listing's `Prefix` (both below the prefix)."""
        params = {"Bucket": self.bucket, **params}
        if "Path" in params:
            params["Key"] = self.key(params.pop("Path"))
        if "Under" in params:
            params["Prefix"] = self.key(params.pop("Under"))
        return params

    def seconds(self, wanted: int) -> int:
        """`wanted`, shortened so a URL never outlives the credentials that sign it."""
        left = self.credentials.seconds_left()
        if left is None:
            return max(1, int(wanted))
        return max(1, min(int(wanted), int(left) - 5))


def build_connection(config: S3SourceConfig, credentials: Credentials) -> Connection:
    """boto3 clients for these credentials: one for calls, one signing for the
    address browsers use (`public_endpoint_url`) when that differs."""
    session = boto3.session.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        region_name=config.region,
    )
    client_config = Config(
        signature_version="s3v4",
        s3={"addressing_style": config.addressing_style},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=32,
        # boto3's newer default CRC checksums are not understood by many
        # S3-compatible stores; send checksums only where S3 requires them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client = session.client("s3", endpoint_url=config.endpoint_url, config=client_config)
    presign_client = client
    if config.public_endpoint_url:
        presign_client = session.client("s3", endpoint_url=config.public_endpoint_url, config=client_config)
    # Credentials carry the folder they are for: the config's, or a broker's S3Folder.
    return Connection(credentials, client, presign_client, credentials.bucket, credentials.prefix)


def whole_object_size(get_response: dict) -> int:
    """The whole object's size from a (possibly ranged) get_object answer."""
    content_range = get_response.get("ContentRange") or ""
    total = content_range.rpartition("/")[2]
    if total.isdigit():
        return int(total)
    return int(get_response.get("ContentLength") or 0)


class S3Gateway:
    """One source's way to S3: its connection, its bucket check, and the operations."""

    def __init__(self, config: S3SourceConfig, credentials: CredentialsProvider, bucket_check: BucketCheck):
        self.config = config
        self.credentials = credentials
        self.bucket_check = bucket_check
        self.current: Connection | None = None
        self.raw = RawS3(self)

    async def connection(self) -> Connection:
        """The client for the current credentials, built once per credentials."""
        credentials = await self.credentials.get()
        current = self.current
        if current is not None and current.credentials is credentials:
            return current
        self.current = await _in_pool(build_connection, self.config, credentials)
        return self.current

    def translate(self, ex: Exception, operation: str, key: str | None = None, bucket: str | None = None):
        """Our error for a boto3 error (s3_errors.translate_error), naming this source."""
        return translate_error(ex, self.config, operation, key, bucket)

    async def run(self, operation: str, function, *args, key: str | None = None, bucket: str | None = None):
        """Run one blocking call (boto3, a response body's read) off the event loop,
        its errors translated; `operation`, `key` and `bucket` are for the message."""
        try:
            return await _in_pool(function, *args)
        except Exception as ex:  # translated into our own types
            raise self.translate(ex, operation, key, bucket) from None

    async def call(self, operation: str, **params):
        """Run one boto3 S3 operation; parameters as `Connection.params` takes them.

        An answer saying the bucket is missing or refuses these keys makes the
        bucket check ask again next time.
        """
        try:
            return await self.call_quietly(operation, **params)
        except BucketUnusable:
            self.bucket_check.forget()
            raise

    async def call_quietly(self, operation: str, **params):
        """`call`, leaving the bucket check alone: for calls whose refusal says
        nothing about the bucket."""
        connection = await self.connection()
        params = connection.params(params)
        method = partial(getattr(connection.client, operation), **params)
        return await self.run(operation, method, key=params.get("Key"), bucket=params["Bucket"])

    async def check_bucket(self, fresh: bool = False) -> None:
        """BucketUnusable (or StorageUnavailable) unless the bucket exists and lets
        these keys list the prefix; a success is remembered (bucket_check.py),
        unless `fresh` asks S3 again now.

        ListObjectsV2 for one key under the prefix, not HeadBucket: keys scoped to
        a prefix, as a credentials broker hands out, may list their prefix while
        HeadBucket (which has no prefix to match a policy against) is refused.
        The source needs that listing anyway, for datasette-files and cleanup.
        """
        if fresh:
            self.bucket_check.forget()
        connection = await self.connection()
        await self.bucket_check.ensure(
            connection.credentials, partial(self.call, "list_objects_v2", Under="", MaxKeys=1)
        )

    # --- reading objects --------------------------------------------------------

    async def read_at_most(self, path: str, limit: int) -> bytes | None:
        """The whole object if it holds at most `limit` bytes, else None.

        One GET for bytes 0..limit: the object's total size (Content-Range, or
        Content-Length from a store that ignores Range) is checked before the
        body is read, and no more than limit + 1 bytes are ever read.
        """
        try:
            response = await self.call("get_object", Path=path, Range=f"bytes=0-{limit}")
        except StorageUnavailable as ex:
            if ex.code == "InvalidRange":  # an empty object has no byte 0
                return b""
            raise
        body = response["Body"]
        try:
            if whole_object_size(response) > limit:
                return None
            data = await self.run("read", body.read, limit + 1)
        finally:
            body.close()
        return data if len(data) <= limit else None

    async def read_range(self, path: str, start: int, length: int) -> bytes:
        """`length` bytes from `start`, by an HTTP Range request.

        A server that ignores Range sends the whole object from byte 0: no more
        than the range's end (start + length bytes) is read of it, so a caller
        never holds a whole large object; callers that care compare the length.
        """
        response = await self.call("get_object", Path=path, Range=f"bytes={start}-{start + length - 1}")
        body = response["Body"]
        try:
            return await self.run("read", body.read, start + length)
        finally:
            body.close()

    async def stream(self, path: str, chunk_size: int) -> AsyncIterator[bytes]:
        """The whole object, `chunk_size` bytes at a time."""
        response = await self.call("get_object", Path=path)
        body = response["Body"]
        try:
            while chunk := await self.run("read", body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    async def head(self, path: str, checksum: bool = False) -> dict | None:
        """The raw HEAD answer for a path, or None when there is no object;
        `checksum` asks for its stored checksum (ChecksumMode=ENABLED)."""
        extra = {"ChecksumMode": "ENABLED"} if checksum else {}
        try:
            return await self.call("head_object", Path=path, **extra)
        except FileNotFoundError:
            return None

    # --- writing objects --------------------------------------------------------

    async def create_multipart(
        self, path: str, content_type: str, checksum_algorithm: str | None = None
    ) -> str:
        """Start a multipart upload to a path; returns its upload id."""
        extra = {"ChecksumAlgorithm": checksum_algorithm} if checksum_algorithm else {}
        created = await self.call("create_multipart_upload", Path=path, ContentType=content_type, **extra)
        return created["UploadId"]

    async def upload_part(self, path: str, upload_id: str, part_number: int, body: bytes) -> str:
        """Send one part of a multipart upload; returns its ETag."""
        response = await self.call(
            "upload_part", Path=path, UploadId=upload_id, PartNumber=part_number, Body=body
        )
        return response["ETag"]

    async def complete_multipart(
        self, path: str, upload_id: str, parts: list[dict], sha256s: dict[int, str] | None = None
    ) -> None:
        """Assemble the object from `parts` ({"PartNumber", "ETag"}), in part-number
        order, with each part's base64 SHA-256 from `sha256s` when given."""
        ordered = [
            {
                "PartNumber": p["PartNumber"],
                "ETag": p["ETag"],
                **({"ChecksumSHA256": sha256s[p["PartNumber"]]} if sha256s else {}),
            }
            for p in sorted(parts, key=lambda p: p["PartNumber"])
        ]
        # If-None-Match: * - a store that honours it (AWS, MinIO, Ceph, moto)
        # refuses to complete onto a key that exists, so a confirmed file is never
        # replaced by another upload to its key; one that does not ignores it.
        await self.call(
            "complete_multipart_upload",
            Path=path,
            UploadId=upload_id,
            MultipartUpload={"Parts": ordered},
            IfNoneMatch="*",
        )

    # --- listing ------------------------------------------------------------------

    async def pages(self, operation: str, params: dict, markers: dict[str, str]) -> AsyncIterator[dict]:
        """Every page of a paged S3 listing. `markers` maps each request parameter that
        asks for the next page to the answer field holding its value."""
        next_page: dict = {}
        while True:
            answer = await self.call(operation, **params, **next_page)
            yield answer
            if not answer.get("IsTruncated"):
                return
            next_page = {parameter: answer[field] for parameter, field in markers.items()}

    async def every(self, operation: str, params: dict, markers: dict[str, str], entries: str) -> list[dict]:
        """Every entry, from every page, of one list in a paged listing's answers."""
        return [
            entry
            async for answer in self.pages(operation, params, markers)
            for entry in answer.get(entries, [])
        ]


class RawS3:
    """Doctor's way in: the gateway's calls, answering with S3's own answers and
    errors (status, code, headers such as the bucket's real region), which
    doctor then judges with the one translation (`S3Gateway.translate`)."""

    def __init__(self, gateway: S3Gateway):
        self.gateway = gateway

    async def call(self, operation: str, **params) -> dict:
        """One boto3 S3 operation, parameters as `Connection.params` takes them; boto3's errors as raised."""
        connection = await self.gateway.connection()
        return await _in_pool(partial(getattr(connection.client, operation), **connection.params(params)))

    async def default_chain_method(self) -> str | None:
        """Where boto3's default chain finds keys (e.g. "env"), or None when it finds none."""
        found = await _in_pool(lambda: boto3.session.Session().get_credentials())
        return found.method if found else None

    async def address(self, path: str) -> str:
        """The URL a browser sends a path's requests to (that of a presigned PUT, unsigned)."""
        connection = await self.gateway.connection()
        url = connection.presign_client.generate_presigned_url(
            "put_object", Params=connection.params({"Path": path})
        )
        return url.split("?", 1)[0]

    @staticmethod
    def headers(answer_or_error) -> dict:
        """The HTTP headers of a raw answer, or of the answer a raw error carries."""
        response = (
            answer_or_error
            if isinstance(answer_or_error, dict)
            else getattr(answer_or_error, "response", None)
        )
        return (response or {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
