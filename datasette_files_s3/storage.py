"""`S3Storage`: the datasette-files `Storage` contract over boto3.

One boto3 client per source, rebuilt only when its credentials change; every
blocking call runs in a thread pool so the event loop never waits on S3.
Presigned URLs are signed with a second client when the browser must reach the
store by another address (`public_endpoint_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from datasette_files.base import (
    FileMetadata,
    Storage,
    StorageCapabilities,
    UploadInstructions,
)

from . import files_bridge
from .bucket_check import BucketCheck
from .config import S3SourceConfig, parse_source_config, safe_host
from .credentials import Credentials, CredentialsProvider, provider_for
from .errors import (
    BodyTooLarge,
    BucketUnusable,
    CredentialsUnavailable,
    NotPermitted,
    ReadTooLarge,
    S3Unreachable,
    StorageUnavailable,
    UploadRejected,
)
from .keys import attachment_disposition, check_filename, download_type, new_file_id, path_for

logger = logging.getLogger("datasette_files_s3")

# Proxy uploads are streamed to S3 in parts of this size: memory stays flat.
PROXY_PART_SIZE = 8 * 1024**2
STREAM_CHUNK_SIZE = 1024**2
# Blocking S3 calls are I/O: more threads than cores is right here.
_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="datasette-files-s3")

# Set while datasette-files' own view runs for a proxy-mode source: its
# complete reads the whole object to make a thumbnail and decodes it on the
# event loop. Refused, it skips that; ours is made on first request, bounded.
_whole_reads_refused = contextvars.ContextVar("whole_reads_refused", default=False)
# (key, most bytes) a proxied upload may write: its checked token's, or None.
_receiving_only = contextvars.ContextVar("receiving_only", default=None)

_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
# S3's ways of saying "these keys may not use this bucket" (doctor names them too).
DENIED_CODES = {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
# ACL grantee groups that reach beyond the bucket owner: anyone, and any AWS account.
PUBLIC_GROUPS = {"AllUsers", "AuthenticatedUsers"}
_EXPIRED_CODES = {"ExpiredToken", "TokenRefreshRequired", "RequestExpired", "InvalidToken"}


def whole_object_size(get_response: dict) -> int:
    """The whole object's size from a (possibly ranged) get_object answer."""
    content_range = get_response.get("ContentRange") or ""
    total = content_range.rpartition("/")[2]
    if total.isdigit():
        return int(total)
    return int(get_response.get("ContentLength") or 0)


# Signed into every presigned PUT: the store keeps a PUT's Cache-Control, and
# confirm accepts this value only (see presigned_put).
SIGNED_PUT_CACHE_CONTROL = "no-cache"


def s3_error_code(ex: BaseException) -> str:
    """S3's error code from a botocore ClientError's parsed response, or ''."""
    if isinstance(ex, ClientError):
        return str(ex.response.get("Error", {}).get("Code", ""))
    return ""


async def blocking(function, *args):
    """Run a blocking call (boto3, a response body's read) in our one thread pool."""
    return await asyncio.get_running_loop().run_in_executor(_executor, function, *args)


@contextlib.contextmanager
def whole_reads_refused():
    """Within this block, read_file (the whole object) raises StorageUnavailable."""
    token = _whole_reads_refused.set(True)
    try:
        yield
    finally:
        _whole_reads_refused.reset(token)


@contextlib.contextmanager
def receiving_only(path: str, max_bytes: int):
    """Within this block, receive_upload writes `path` (refusing any other) and
    at most `max_bytes` (BodyTooLarge beyond, the partial upload aborted).

    The proxy upload route checks the token in upload_url's query before the
    body is read; datasette-files then uses the form's upload_token, which
    could name another token (another actor's). This holds the write to the
    checked one, and to the size it declared."""
    token = _receiving_only.set((path, max_bytes))
    try:
        yield
    finally:
        _receiving_only.reset(token)


@dataclass(frozen=True)
class Connection:
    """A boto3 client bound to one set of credentials and the bucket they serve."""

    credentials: Credentials
    client: object
    presign_client: object
    bucket: str
    prefix: str


def s3_capabilities(max_file_size: int | None) -> StorageCapabilities:
    """What an S3 source can do; datasette-files' own upload limit follows max_file_size."""
    return StorageCapabilities(
        can_upload=True,
        can_delete=True,
        can_list=True,
        can_generate_signed_urls=True,
        requires_proxy_download=False,
        max_file_size=max_file_size,
    )


def find_source_name(datasette, config: dict, taken: set) -> str:
    """The datasette-files source whose `config:` block this is.

    datasette-files configures sources in the order they are written, so the
    first matching source not yet `taken` is ours, even when two sources have
    identical config blocks.
    """
    if datasette is None:
        return "s3"
    sources = (datasette.plugin_config("datasette-files") or {}).get("sources") or {}
    for name, definition in sources.items():
        definition = definition or {}
        if (
            definition.get("storage") == "s3"
            and (definition.get("config") or {}) == config
            and name not in taken
        ):
            return name
    return "s3"


class S3Storage(Storage):
    """Files in an S3 (or S3-compatible) bucket under an optional prefix."""

    storage_type = "s3"
    # Set on the subclass that register_files_storage_types returns, so that
    # configure() can find its source's name in that Datasette's config.
    datasette = None
    sources_named: frozenset | set = frozenset()

    @classmethod
    def bound_to(cls, datasette) -> type[S3Storage]:
        """A subclass whose instances belong to this Datasette's datasette-files sources."""
        return type(cls.__name__, (cls,), {"datasette": datasette, "sources_named": set()})

    def __init__(self):
        self.config: S3SourceConfig | None = None
        self.credentials: CredentialsProvider | None = None
        self._connection: Connection | None = None
        self._capabilities = s3_capabilities(None)
        self.bucket_check = BucketCheck()
        # upload_method auto: the store answered POST Object with 501 (single_upload.py).
        self.post_refused = False

    @property
    def capabilities(self) -> StorageCapabilities:
        return self._capabilities

    @property
    def source(self) -> str:
        """The datasette-files source name, for messages."""
        return self.config.source if self.config else "s3"

    async def configure(self, config: dict, get_secret=None) -> None:
        """Validate the config (raising ConfigError) and prepare credentials.

        The secrets are then removed from `config` itself: datasette-files
        stores that dict in its internal table once this returns.
        """
        name = find_source_name(self.datasette, config, self.sources_named)
        if isinstance(self.sources_named, set):
            self.sources_named.add(name)
        self.config = parse_source_config(name, config)
        files_bridge.keep_secrets_out_of_stored_config(config)
        self.credentials = provider_for(self.config)
        self._capabilities = s3_capabilities(self.config.max_file_size)
        if self.config.credentials_url:
            # A broker that is down must not stop Datasette from starting.
            try:
                await self.credentials.get()
            except CredentialsUnavailable as ex:
                logger.warning("%s; will retry when credentials are next needed", ex)

    # --- connection -----------------------------------------------------

    async def connection(self) -> Connection:
        """The client for the current credentials, built once per credentials."""
        credentials = await self.credentials.get()
        current = self._connection
        if current is not None and current.credentials is credentials:
            return current
        self._connection = await blocking(self._build_connection, credentials)
        return self._connection

    async def folder(self) -> str:
        """`s3://bucket/prefix/`: where this source's keys point now (a broker may move it)."""
        connection = await self.connection()
        return f"s3://{connection.bucket}/{connection.prefix}"

    def _build_connection(self, credentials: Credentials) -> Connection:
        config = self.config
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
            presign_client = session.client(
                "s3", endpoint_url=config.public_endpoint_url, config=client_config
            )
        return Connection(
            credentials=credentials,
            client=client,
            presign_client=presign_client,
            bucket=credentials.bucket or config.bucket,
            prefix=credentials.prefix if credentials.bucket else config.prefix,
        )

    async def call(self, operation: str, **params):
        """Run one boto3 S3 operation off the event loop, with errors translated.

        `Bucket` is filled in; `Key` may be given as `Path` (relative to the prefix).
        """
        connection = await self.connection()
        params = {"Bucket": connection.bucket, **params}
        if "Path" in params:
            params["Key"] = connection.prefix + params.pop("Path")
        method = getattr(connection.client, operation)
        try:
            return await blocking(partial(method, **params))
        except Exception as ex:  # translated into our own types below
            error = self.translate_error(ex, operation, params.get("Key"), params["Bucket"])
            if isinstance(error, BucketUnusable):
                self.bucket_check.forget()
            raise error from None

    async def check_bucket(self, fresh: bool = False) -> None:
        """BucketUnusable (or StorageUnavailable) unless the bucket exists and lets
        these keys list the source's prefix; a success is remembered (bucket_check.py),
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
            connection.credentials,
            partial(self.call, "list_objects_v2", Prefix=connection.prefix, MaxKeys=1),
        )

    def translate_error(
        self, ex: Exception, operation: str, key: str | None, bucket: str | None = None
    ) -> Exception:
        """Map a boto3 error to FileNotFoundError or a StorageUnavailable naming the source."""
        where = f"datasette-files source '{self.source}'"
        bucket = bucket or self.config.bucket or "(from broker)"
        if isinstance(ex, ClientError):
            code = s3_error_code(ex)
            if code in _MISSING_CODES:
                return FileNotFoundError(f"{where}: no object at {key}")
            if code == "NoSuchBucket":
                return BucketUnusable(
                    f"{where}: bucket '{bucket}' does not exist "
                    "(check the source's bucket setting, or create the bucket)",
                    code,
                )
            if code in _EXPIRED_CODES:
                return CredentialsUnavailable(
                    f"{where}: S3 credentials have expired ({operation}: {code})", code
                )
            if code in DENIED_CODES:
                denied = NotPermitted if code in ("AccessDenied", "403") else BucketUnusable
                return denied(
                    f"{where}: S3 denied access to bucket '{bucket}' ({operation}: {code}); "
                    "check the source's credentials and the bucket's policy",
                    code,
                )
            return StorageUnavailable(f"{where}: S3 {operation} failed ({code or 'unknown error'})", code)
        if isinstance(ex, (NoCredentialsError, PartialCredentialsError)):
            return CredentialsUnavailable(
                f"{where}: no S3 credentials found; set access_key_id and secret_access_key, "
                "credentials_url, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
            )
        if isinstance(ex, (BotoConnectionError, HTTPClientError)):
            # Browsers know the store by public_endpoint_url: a message they may
            # see names that host; the internal one goes to the log only.
            internal = safe_host(self.config.endpoint_url or "https://s3.amazonaws.com")
            shown = (
                safe_host(self.config.public_endpoint_url) if self.config.public_endpoint_url else internal
            )
            unreachable = S3Unreachable(
                f"{where}: cannot reach the S3 endpoint {shown} ({operation}: {type(ex).__name__})"
            )
            if shown != internal:
                unreachable.log_detail = f"endpoint_url {internal}"
            return unreachable
        if isinstance(ex, BotoCoreError):
            return StorageUnavailable(f"{where}: S3 {operation} failed ({type(ex).__name__})")
        if isinstance(ex, (FileNotFoundError, StorageUnavailable)):
            return ex
        return StorageUnavailable(f"{where}: S3 {operation} failed ({type(ex).__name__})")

    def presign_seconds(self, connection: Connection, wanted: int) -> int:
        """`wanted`, shortened so the URL never outlives the credentials that sign it."""
        left = connection.credentials.seconds_left()
        if left is None:
            return max(1, int(wanted))
        return max(1, min(int(wanted), int(left) - 5))

    # --- the Storage contract ---------------------------------------------

    async def head(self, path: str, checksum: bool = False) -> dict | None:
        """The raw HEAD answer for a path, or None when there is no object.

        `checksum` asks for the object's stored checksum (ChecksumMode=ENABLED),
        which stores that refuse checksums may not understand.
        """
        extra = {"ChecksumMode": "ENABLED"} if checksum else {}
        try:
            return await self.call("head_object", Path=path, **extra)
        except FileNotFoundError:
            return None

    async def public_grants(self, path: str) -> list[str] | None:
        """The permissions the object's ACL grants to everyone or to every AWS
        user (`READ`, `FULL_CONTROL`, ...): [] for none, None when the store
        keeps no ACLs or these keys may not read them (then nothing is known).

        Called directly, not through `call`: a refusal here says nothing about
        the bucket, so it must not reset the bucket check.
        """
        connection = await self.connection()
        try:
            acl = await blocking(
                partial(
                    connection.client.get_object_acl, Bucket=connection.bucket, Key=connection.prefix + path
                )
            )
        except (ClientError, BotoCoreError):
            return None
        return [
            grant.get("Permission", "")
            for grant in acl.get("Grants", [])
            if (grant.get("Grantee") or {}).get("URI", "").rsplit("/", 1)[-1] in PUBLIC_GROUPS
        ]

    async def get_file_metadata(self, path: str) -> FileMetadata | None:
        head = await self.head(path)
        if head is None:
            return None
        return FileMetadata(
            path=path,
            filename=path.rsplit("/", 1)[-1],
            content_type=head.get("ContentType"),
            size=head.get("ContentLength"),
            created_at=head["LastModified"].isoformat() if head.get("LastModified") else None,
            metadata={"etag": head.get("ETag", "").strip('"')},
        )

    async def read_file(self, path: str) -> bytes:
        """The whole object, if it is no larger than the source's max_read_size.

        datasette-files calls this for its CSV import and previews; a larger
        object is refused (ReadTooLarge, a 413) before its body is read, so one
        GET can never make Datasette hold a whole large file.
        """
        if _whole_reads_refused.get():
            raise StorageUnavailable(
                f"datasette-files source '{self.source}': whole-object read refused here"
            )
        limit = self.config.max_read_size
        body = await self.read_at_most(path, limit)
        if body is None:
            raise ReadTooLarge(
                f"{path.rsplit('/', 1)[-1]} is larger than source '{self.source}' reads whole "
                f"(max_read_size: {limit} bytes): download it instead, or raise max_read_size"
            )
        return body

    async def read_file_limited(self, path: str, max_bytes: int) -> bytes:
        """At most `max_bytes` (and never more than max_read_size) by one ranged
        GET; datasette-files' FileTooLarge for a larger object, unread."""
        limit = min(max_bytes, self.config.max_read_size)
        body = await self.read_at_most(path, limit)
        if body is None:
            raise files_bridge.file_too_large(limit)
        return body

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
            data = await self._run(body.read, limit + 1)
        finally:
            body.close()
        return data if len(data) <= limit else None

    async def read_bytes(self, path: str, num_bytes: int = 2048) -> bytes:
        """The first `num_bytes` by an HTTP Range request, never the whole object."""
        if num_bytes <= 0:
            return b""
        try:
            body = await self.read_range(path, 0, num_bytes)
        except StorageUnavailable as ex:
            if ex.code == "InvalidRange":  # an empty object has no byte 0
                return b""
            raise
        return body[:num_bytes]

    async def read_range(self, path: str, start: int, length: int) -> bytes:
        """`length` bytes from `start`, by an HTTP Range request.

        A server that ignores Range sends the whole object from byte 0: no more
        than the range's end (start + length bytes) is read of it, so a caller
        never holds a whole large object; callers that care compare the length.
        """
        response = await self.call("get_object", Path=path, Range=f"bytes={start}-{start + length - 1}")
        body = response["Body"]
        try:
            return await self._run(body.read, start + length)
        finally:
            body.close()

    async def stream_file(self, path: str, chunk_size: int = STREAM_CHUNK_SIZE) -> AsyncIterator[bytes]:
        response = await self.call("get_object", Path=path)
        body = response["Body"]
        try:
            while True:
                chunk = await self._run(body.read, chunk_size)
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def list_files(
        self, prefix: str = "", cursor: str | None = None, limit: int = 100
    ) -> tuple[list[FileMetadata], str | None]:
        connection = await self.connection()
        params = {"Prefix": connection.prefix + prefix, "MaxKeys": max(1, min(int(limit), 1000))}
        if cursor:
            params["ContinuationToken"] = cursor
        response = await self.call("list_objects_v2", **params)
        files = [
            FileMetadata(
                path=item["Key"][len(connection.prefix) :],
                filename=item["Key"].rsplit("/", 1)[-1],
                size=item.get("Size"),
                created_at=item["LastModified"].isoformat() if item.get("LastModified") else None,
                metadata={"etag": item.get("ETag", "").strip('"')},
            )
            for item in response.get("Contents", [])
        ]
        return files, response.get("NextContinuationToken")

    async def delete_file(self, path: str) -> None:
        """Delete the object at a path; S3 deletes are idempotent (no object is no error)."""
        await self.call("delete_object", Path=path)

    # --- named S3 operations beyond the contract ------------------------------

    async def put_object(self, path: str, body: bytes, content_type: str) -> None:
        """Write a whole object in one request."""
        await self.call("put_object", Path=path, Body=body, ContentType=content_type)

    async def create_multipart(
        self, path: str, content_type: str, checksum_algorithm: str | None = None
    ) -> str:
        """Start a multipart upload to a path; returns its upload id. With a
        `checksum_algorithm` (SHA256) the store requires, and checks, each part's checksum."""
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
        order; `sha256s` ({part number: base64 SHA-256}) when the upload carries checksums."""
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

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        """Abort a multipart upload: S3 drops its parts."""
        await self.call("abort_multipart_upload", Path=path, UploadId=upload_id)

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

    async def multipart_uploads(self) -> list[dict]:
        """Every incomplete multipart upload under the source's prefix (all pages);
        each entry's `Key` is the whole key, prefix included."""
        connection = await self.connection()
        markers = {"KeyMarker": "NextKeyMarker", "UploadIdMarker": "NextUploadIdMarker"}
        return [
            upload
            async for answer in self.pages("list_multipart_uploads", {"Prefix": connection.prefix}, markers)
            for upload in answer.get("Uploads", [])
        ]

    async def objects(self) -> AsyncIterator[dict]:
        """Every object under the source's prefix, a page at a time (a bucket may
        hold millions); each entry's `Key` is the whole key, prefix included."""
        connection = await self.connection()
        markers = {"ContinuationToken": "NextContinuationToken"}
        async for answer in self.pages("list_objects_v2", {"Prefix": connection.prefix}, markers):
            for item in answer.get("Contents", []):
                yield item

    async def head_bucket(self) -> dict:
        """HEAD the bucket: the raw answer, and S3's errors untranslated (doctor reads
        their status, code and headers, such as the bucket's real region)."""
        connection = await self.connection()
        return await blocking(partial(connection.client.head_bucket, Bucket=connection.bucket))

    async def peek_prefix(self) -> dict:
        """List one key under the source's prefix: the raw answer, errors untranslated
        (for doctor, where keys scoped to the prefix may not HEAD the bucket)."""
        connection = await self.connection()
        list_one = partial(
            connection.client.list_objects_v2, Bucket=connection.bucket, Prefix=connection.prefix, MaxKeys=1
        )
        return await blocking(list_one)

    async def download_url(
        self, path: str, expires_in: int | None = None, content_type: str | None = None
    ) -> str:
        """A presigned GET that the browser saves under the original filename.

        The URL fixes the type the bucket answers with (keys.download_type):
        the file's recorded `content_type`, or application/octet-stream for
        active content judged by the name or that type. Without `content_type`
        (a caller that has only the path) the object's stored type is read.
        """
        connection = await self.connection()
        if content_type is None:
            content_type = (await self.head(path) or {}).get("ContentType")
        filename = path.rsplit("/", 1)[-1]
        params = {
            "Bucket": connection.bucket,
            "Key": connection.prefix + path,
            "ResponseContentDisposition": attachment_disposition(filename),
            "ResponseContentType": download_type(filename, content_type),
        }
        seconds = self.presign_seconds(connection, expires_in or self.config.download_expires)
        return connection.presign_client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=seconds
        )

    async def presigned_post(
        self, path: str, content_type: str, size: int, expires_in: int, sha256: str | None = None
    ) -> tuple[UploadInstructions, float]:
        """A POST policy for exactly this key, size and type; returns it and its expiry.

        With `sha256` (base64), the policy also fixes the object's SHA-256: a
        store that checks it refuses any other bytes, even under this policy.

        Signing never contacts S3, so the bucket is checked first (once in a
        while): a missing bucket is then an answer here, not a failed POST in
        the browser.
        """
        await self.check_bucket()
        connection = await self.connection()
        seconds = self.presign_seconds(connection, expires_in)
        fields = {"Content-Type": content_type}
        if sha256:
            fields |= {"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": sha256}
        post = connection.presign_client.generate_presigned_post(
            Bucket=connection.bucket,
            Key=connection.prefix + path,
            Fields=fields,
            Conditions=[
                *({name: value} for name, value in fields.items()),
                ["content-length-range", size, size],
            ],
            ExpiresIn=seconds,
        )
        instructions = UploadInstructions(
            upload_url=post["url"], upload_method="POST", upload_headers={}, upload_fields=post["fields"]
        )
        return instructions, time.time() + seconds

    async def presigned_put(
        self, path: str, content_type: str, size: int, expires_in: int, sha256: str | None = None
    ) -> tuple[UploadInstructions, float]:
        """A presigned PUT for exactly this key, size and type; returns it and its expiry.

        For stores that refuse POST Object (R2 and B2 answer 501). As with part
        URLs, Content-Length, Content-Type, the SHA-256 (when given) and
        `If-None-Match: *` are signed headers: a store that checks signatures
        refuses a PUT without them, and one that honours the condition refuses
        to write the key a second time, so a confirmed file cannot be replaced
        through its own URL. Cache-Control is signed too: a browser sends its own
        (Chromium: max-age=0 after a reload) and the store would keep it; this
        one is known to confirm. `upload_headers` are those the browser must send
        (it sets Content-Length itself from the Blob).
        """
        await self.check_bucket()
        connection = await self.connection()
        seconds = self.presign_seconds(connection, expires_in)
        headers = {
            "Content-Type": content_type,
            "If-None-Match": "*",
            "Cache-Control": SIGNED_PUT_CACHE_CONTROL,
        }
        params = {
            "ContentType": content_type,
            "ContentLength": size,
            "IfNoneMatch": "*",
            "CacheControl": SIGNED_PUT_CACHE_CONTROL,
        }
        if sha256:
            headers["x-amz-checksum-sha256"] = sha256
            params["ChecksumSHA256"] = sha256
        url = connection.presign_client.generate_presigned_url(
            "put_object",
            Params={"Bucket": connection.bucket, "Key": connection.prefix + path, **params},
            ExpiresIn=seconds,
        )
        instructions = UploadInstructions(
            upload_url=url, upload_method="PUT", upload_headers=headers, upload_fields={}
        )
        return instructions, time.time() + seconds

    async def prepare_upload(self, filename: str, content_type: str, size: int) -> UploadInstructions:
        """Instructions for a direct browser upload of one file to a new key."""
        path = path_for(new_file_id(), check_filename(filename))
        instructions, _ = await self.presigned_post(path, content_type, size, self.config.upload_expires)
        return instructions

    async def presign_part(
        self,
        path: str,
        upload_id: str,
        part_number: int,
        length: int,
        expires_in: int,
        sha256: str | None = None,
    ) -> str:
        """A presigned URL for PUTting one part of a multipart upload, of exactly `length` bytes.

        Content-Length is among the signed headers, so a store that checks
        signatures refuses a PUT of any other size (the browser sets the header
        from the Blob it sends). So is x-amz-checksum-sha256 when `sha256` is
        given: the PUT must send it, and the store refuses other bytes.
        """
        connection = await self.connection()
        checksum = {"ChecksumSHA256": sha256} if sha256 else {}
        return connection.presign_client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": connection.bucket,
                "Key": connection.prefix + path,
                "UploadId": upload_id,
                "PartNumber": part_number,
                "ContentLength": length,
                **checksum,
            },
            ExpiresIn=self.presign_seconds(connection, expires_in),
        )

    async def list_parts(self, path: str, upload_id: str) -> list[dict]:
        """Every part S3 holds for a multipart upload, following pagination."""
        params, markers = {"Path": path, "UploadId": upload_id}, {"PartNumberMarker": "NextPartNumberMarker"}
        return [
            part
            async for answer in self.pages("list_parts", params, markers)
            for part in answer.get("Parts", [])
        ]

    async def receive_upload(
        self, path: str, stream: AsyncIterator[bytes], content_type: str
    ) -> FileMetadata:
        """Stream a proxied upload to S3 in parts; memory holds one or two parts at most."""
        allowed_path, max_bytes = _receiving_only.get() or (path, None)
        if path != allowed_path:
            raise UploadRejected(
                "The form's upload_token is not the one in the upload_url: send both from the same prepare"
            )
        sha256 = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload_id = None
        parts: list[dict] = []
        part_number = 0
        pending: asyncio.Future | None = None

        async def send_part(data: bytes, number: int):
            parts.append(
                {"PartNumber": number, "ETag": await self.upload_part(path, upload_id, number, data)}
            )

        try:
            async for chunk in stream:
                sha256.update(chunk)
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BodyTooLarge(
                        f"The file is larger than its prepare declared: at most {max_bytes} bytes"
                    )
                buffer += chunk
                while len(buffer) >= PROXY_PART_SIZE:
                    if upload_id is None:
                        upload_id = await self.create_multipart(path, content_type)
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
                await self.put_object(path, bytes(buffer), content_type)
            else:
                if buffer:
                    part_number += 1
                    await send_part(bytes(buffer), part_number)
                await self.complete_multipart(path, upload_id, parts)
        except BaseException:
            if pending is not None and not pending.done():
                pending.cancel()
            if upload_id is not None:
                try:
                    await self.abort_multipart(path, upload_id)
                except Exception:
                    logger.warning(
                        "datasette-files source '%s': could not abort multipart upload for %s",
                        self.source,
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

    async def _run(self, function, *args):
        try:
            return await blocking(function, *args)
        except Exception as ex:
            raise self.translate_error(ex, "read", None) from None
