"""`S3Storage`: the datasette-files `Storage` contract, over the S3 gateway.

This adapter holds what datasette-files asks of a source (its config, its
capabilities, its reads, listing, downloads and uploads) and the limits we put
on those; every S3 call goes through the source's `S3Gateway` (s3_gateway.py),
and presigning through s3_presign.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from datasette_files.base import (
    FileMetadata,
    Storage,
    StorageCapabilities,
    UploadInstructions,
)

from . import files_bridge, s3_presign
from .around_upstream_views import limited_read_cap, receiving_limits, whole_reads_are_refused
from .bucket_check import BucketCheck
from .config import S3SourceConfig, parse_source_config
from .credentials import CredentialsProvider, provider_for
from .errors import CredentialsUnavailable, ReadTooLarge, StorageUnavailable, UploadRejected
from .keys import check_filename, new_file_id, path_for
from .s3_gateway import Connection, S3Gateway
from .streamed_upload import stream_to_bucket

logger = logging.getLogger("datasette_files_s3")

STREAM_CHUNK_SIZE = 1024**2
# ACL grantee groups that reach beyond the bucket owner: anyone, and any AWS account.
PUBLIC_GROUPS = {"AllUsers", "AuthenticatedUsers"}


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
        self.gateway: S3Gateway | None = None
        self._capabilities = s3_capabilities(None)
        self.bucket_check = BucketCheck()
        # upload_method auto: the store answered POST Object with 501, or a POST
        # was confirmed here (single_upload.py).
        self.post_refused = False
        self.post_accepted = False

    @property
    def credentials(self) -> CredentialsProvider | None:
        """Where this source's keys come from; the gateway holds it, so that a
        provider set here (a test's fresh broker provider) is the one it uses."""
        return self.gateway.credentials if self.gateway else None

    @credentials.setter
    def credentials(self, provider: CredentialsProvider) -> None:
        self.gateway.credentials = provider

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
        self.gateway = S3Gateway(self.config, provider_for(self.config), self.bucket_check)
        self._capabilities = s3_capabilities(self.config.max_file_size)
        if self.config.credentials_url:
            # A broker that is down must not stop Datasette from starting.
            try:
                await self.credentials.get()
            except CredentialsUnavailable as ex:
                logger.warning("%s; will retry when credentials are next needed", ex)

    # --- the gateway, for the modules that speak S3 -------------------------

    async def connection(self) -> Connection:
        """The current connection: bucket, prefix, and the clients for these credentials."""
        return await self.gateway.connection()

    @property
    def _connection(self) -> Connection | None:
        return self.gateway.current

    async def folder(self) -> str:
        """`s3://bucket/prefix/`: where this source's keys point now (a broker may move it)."""
        connection = await self.connection()
        return f"s3://{connection.bucket}/{connection.prefix}"

    async def call(self, operation: str, **params):
        """One boto3 S3 operation on the source's bucket (S3Gateway.call): `Path`
        names an object below the prefix; errors are ours."""
        return await self.gateway.call(operation, **params)

    async def check_bucket(self, fresh: bool = False) -> None:
        """BucketUnusable (or StorageUnavailable) unless the bucket is there and
        lets these keys list the prefix (S3Gateway.check_bucket)."""
        await self.gateway.check_bucket(fresh)

    def translate_error(self, ex: Exception, operation: str, key: str | None, bucket: str | None = None):
        """Our error for a boto3 error, naming this source (s3_errors.translate_error)."""
        return self.gateway.translate(ex, operation, key, bucket)

    def presign_seconds(self, connection: Connection, wanted: int) -> int:
        """`wanted`, shortened so the URL never outlives the credentials that sign it."""
        return connection.seconds(wanted)

    # --- the Storage contract ---------------------------------------------

    async def head(self, path: str, checksum: bool = False) -> dict | None:
        """The raw HEAD answer for a path, or None when there is no object.

        `checksum` asks for the object's stored checksum (ChecksumMode=ENABLED),
        which stores that refuse checksums may not understand.
        """
        return await self.gateway.head(path, checksum)

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
        if whole_reads_are_refused():
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
        if limited_read_cap() is not None:
            limit = min(limit, limited_read_cap())
        body = await self.read_at_most(path, limit)
        if body is None:
            raise files_bridge.file_too_large(limit)
        return body

    async def read_at_most(self, path: str, limit: int) -> bytes | None:
        """The whole object if it holds at most `limit` bytes, else None (S3Gateway.read_at_most)."""
        return await self.gateway.read_at_most(path, limit)

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
        """`length` bytes from `start`, by an HTTP Range request (S3Gateway.read_range)."""
        return await self.gateway.read_range(path, start, length)

    async def stream_file(self, path: str, chunk_size: int = STREAM_CHUNK_SIZE) -> AsyncIterator[bytes]:
        async for chunk in self.gateway.stream(path, chunk_size):
            yield chunk

    async def list_files(
        self, prefix: str = "", cursor: str | None = None, limit: int = 100
    ) -> tuple[list[FileMetadata], str | None]:
        connection = await self.connection()
        params = {"Under": prefix, "MaxKeys": max(1, min(int(limit), 1000))}
        if cursor:
            params["ContinuationToken"] = cursor
        response = await self.call("list_objects_v2", **params)
        files = [
            FileMetadata(
                path=connection.path(item["Key"]),
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
        return s3_presign.download(connection, path, expires_in or self.config.download_expires, content_type)

    async def prepare_upload(self, filename: str, content_type: str, size: int) -> UploadInstructions:
        """Instructions for a direct browser upload of one file to a new key."""
        path = path_for(new_file_id(), check_filename(filename))
        instructions, _ = await self.presigned_post(path, content_type, size, self.config.upload_expires)
        return instructions

    async def receive_upload(
        self, path: str, stream: AsyncIterator[bytes], content_type: str
    ) -> FileMetadata:
        """Stream a proxied upload to S3 in parts (streamed_upload.py); memory holds one or two parts at most."""
        allowed_path, max_bytes = receiving_limits() or (path, None)
        if path != allowed_path:
            raise UploadRejected(
                "The form's upload_token is not the one in the upload_url: send both from the same prepare"
            )
        return await stream_to_bucket(self.gateway, path, stream, content_type, max_bytes)

    # --- S3 beyond the contract: our uploads, confirm, cleanup ----------------

    async def public_grants(self, path: str) -> list[str] | None:
        """The permissions the object's ACL grants to everyone or to every AWS
        user (`READ`, `FULL_CONTROL`, ...): [] for none, None when the store
        keeps no ACLs or these keys may not read them (then nothing is known).

        A refusal here says nothing about the bucket, so it leaves the bucket check alone.
        """
        await self.connection()  # a broker that fails is an error, not "nothing known"
        try:
            acl = await self.gateway.call_quietly("get_object_acl", Path=path)
        except (StorageUnavailable, FileNotFoundError):
            return None
        return [
            grant.get("Permission", "")
            for grant in acl.get("Grants", [])
            if (grant.get("Grantee") or {}).get("URI", "").rsplit("/", 1)[-1] in PUBLIC_GROUPS
        ]

    async def put_object(self, path: str, body: bytes, content_type: str) -> None:
        """Write a whole object in one request."""
        await self.call("put_object", Path=path, Body=body, ContentType=content_type)

    async def presigned_post(
        self, path: str, content_type: str, size: int, expires_in: int, sha256: str | None = None
    ) -> tuple[UploadInstructions, float]:
        """A POST policy for exactly this key, size and type (s3_presign.post);
        returns it and its expiry.

        Signing never contacts S3, so the bucket is checked first (once in a
        while): a missing bucket is then an answer here, not a failed POST in
        the browser.
        """
        await self.check_bucket()
        return s3_presign.post(await self.connection(), path, content_type, size, expires_in, sha256)

    async def presigned_put(
        self, path: str, content_type: str, size: int, expires_in: int, sha256: str | None = None
    ) -> tuple[UploadInstructions, float]:
        """A presigned PUT for exactly this key, size and type (s3_presign.put), for
        stores that refuse POST Object (R2 and B2 answer 501); the bucket is
        checked first, as for presigned_post."""
        await self.check_bucket()
        return s3_presign.put(await self.connection(), path, content_type, size, expires_in, sha256)

    async def create_multipart(
        self, path: str, content_type: str, checksum_algorithm: str | None = None
    ) -> str:
        """Start a multipart upload to a path; returns its upload id. With a
        `checksum_algorithm` (SHA256) the store requires, and checks, each part's checksum."""
        return await self.gateway.create_multipart(path, content_type, checksum_algorithm)

    async def presign_part(
        self,
        path: str,
        upload_id: str,
        part_number: int,
        length: int,
        expires_in: int,
        sha256: str | None = None,
    ) -> str:
        """A presigned URL for PUTting one part of exactly `length` bytes (s3_presign.part)."""
        connection = await self.connection()
        return s3_presign.part(connection, path, upload_id, part_number, length, expires_in, sha256)

    async def upload_part(self, path: str, upload_id: str, part_number: int, body: bytes) -> str:
        """Send one part of a multipart upload; returns its ETag."""
        return await self.gateway.upload_part(path, upload_id, part_number, body)

    async def complete_multipart(
        self, path: str, upload_id: str, parts: list[dict], sha256s: dict[int, str] | None = None
    ) -> None:
        """Assemble the object from `parts` ({"PartNumber", "ETag"}), refusing to
        replace an object at the key; `sha256s` ({part number: base64 SHA-256})
        when the upload carries checksums."""
        await self.gateway.complete_multipart(path, upload_id, parts, sha256s)

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        """Abort a multipart upload: S3 drops its parts."""
        await self.call("abort_multipart_upload", Path=path, UploadId=upload_id)

    async def list_parts(self, path: str, upload_id: str) -> list[dict]:
        """Every part S3 holds for a multipart upload, following pagination."""
        params, markers = {"Path": path, "UploadId": upload_id}, {"PartNumberMarker": "NextPartNumberMarker"}
        return await self.gateway.every("list_parts", params, markers, "Parts")

    def pages(self, operation: str, params: dict, markers: dict[str, str]) -> AsyncIterator[dict]:
        """Every page of a paged S3 listing (S3Gateway.pages)."""
        return self.gateway.pages(operation, params, markers)

    async def multipart_uploads(self) -> list[dict]:
        """Every incomplete multipart upload under the source's prefix (all pages);
        each entry's `Key` is the whole key, prefix included."""
        markers = {"KeyMarker": "NextKeyMarker", "UploadIdMarker": "NextUploadIdMarker"}
        return await self.gateway.every("list_multipart_uploads", {"Under": ""}, markers, "Uploads")

    async def objects(self) -> AsyncIterator[dict]:
        """Every object under the source's prefix, a page at a time (a bucket may
        hold millions); each entry's `Key` is the whole key, prefix included."""
        markers = {"ContinuationToken": "NextContinuationToken"}
        async for answer in self.pages("list_objects_v2", {"Under": ""}, markers):
            for item in answer.get("Contents", []):
                yield item
