"""Presigned S3 requests for one source's keys: GET, POST policy, PUT and part PUT.

Signing never contacts S3. Each request is signed by the client for the
address browsers use (`Connection.presign_client`) and never outlives the
credentials that sign it (`Connection.seconds`). What each signs, and why,
is said at each function; the keys come from `Connection.key`.
"""

from __future__ import annotations

import time
import weakref
from datetime import datetime, timedelta, timezone

from botocore.auth import ISO8601, S3SigV4PostAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from datasette_files.base import UploadInstructions

from .keys import attachment_disposition, download_type
from .s3_gateway import Connection

# Signed into every presigned PUT: the store keeps a PUT's Cache-Control, and
# confirm accepts this value only (see put).
SIGNED_PUT_CACHE_CONTROL = "no-cache"


def url(connection: Connection, operation: str, path: str, seconds: int, **params) -> str:
    """A URL for one boto3 operation on a path, signed for `seconds` (see Connection.seconds)."""
    return connection.presign_client.generate_presigned_url(
        operation, Params=connection.params({"Path": path, **params}), ExpiresIn=seconds
    )


def download(connection: Connection, path: str, expires_in: int, content_type: str | None) -> str:
    """A presigned GET that the browser saves under the original filename, with
    the type the bucket answers with fixed (keys.download_type)."""
    filename = path.rsplit("/", 1)[-1]
    return url(
        connection,
        "get_object",
        path,
        connection.seconds(expires_in),
        ResponseContentDisposition=attachment_disposition(filename),
        ResponseContentType=download_type(filename, content_type),
    )


def post(
    connection: Connection, path: str, content_type: str, size: int, expires_in: int, sha256: str | None
) -> tuple[UploadInstructions, float]:
    """A POST policy for exactly this key, size and type (and SHA-256, base64,
    when given); returns it and its expiry."""
    seconds = connection.seconds(expires_in)
    fields = {"Content-Type": content_type}
    if sha256:
        fields |= {"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": sha256}
    conditions = [*({name: value} for name, value in fields.items()), ["content-length-range", size, size]]
    signed = presigned_post(connection, connection.key(path), fields, conditions, seconds)
    instructions = UploadInstructions(
        upload_url=signed["url"], upload_method="POST", upload_headers={}, upload_fields=signed["fields"]
    )
    return instructions, time.time() + seconds


def put(
    connection: Connection, path: str, content_type: str, size: int, expires_in: int, sha256: str | None
) -> tuple[UploadInstructions, float]:
    """A presigned PUT for exactly this key, size and type; returns it and its expiry.

    Content-Length, Content-Type, the SHA-256 (when given) and `If-None-Match: *`
    are signed headers: a store that checks signatures refuses a PUT without
    them, and one that honours the condition refuses to write the key a second
    time, so a confirmed file cannot be replaced through its own URL.
    Cache-Control is signed too: a browser sends its own (Chromium: max-age=0
    after a reload) and the store would keep it; this one is known to confirm.
    `upload_headers` are those the browser must send (it sets Content-Length
    itself from the Blob).
    """
    seconds = connection.seconds(expires_in)
    headers = {"Content-Type": content_type, "If-None-Match": "*", "Cache-Control": SIGNED_PUT_CACHE_CONTROL}
    params = {
        "ContentType": content_type,
        "ContentLength": size,
        "IfNoneMatch": "*",
        "CacheControl": SIGNED_PUT_CACHE_CONTROL,
    }
    if sha256:
        headers["x-amz-checksum-sha256"] = sha256
        params["ChecksumSHA256"] = sha256
    instructions = UploadInstructions(
        upload_url=url(connection, "put_object", path, seconds, **params),
        upload_method="PUT",
        upload_headers=headers,
        upload_fields={},
    )
    return instructions, time.time() + seconds


def part(
    connection: Connection,
    path: str,
    upload_id: str,
    part_number: int,
    length: int,
    expires_in: int,
    sha256: str | None,
) -> str:
    """A presigned PUT of one part of a multipart upload, of exactly `length` bytes.

    Content-Length is among the signed headers, so a store that checks
    signatures refuses a PUT of any other size (the browser sets the header
    from the Blob it sends). So is x-amz-checksum-sha256 when `sha256` is
    given: the PUT must send it, and the store refuses other bytes.
    """
    checksum = {"ChecksumSHA256": sha256} if sha256 else {}
    return url(
        connection,
        "upload_part",
        path,
        connection.seconds(expires_in),
        UploadId=upload_id,
        PartNumber=part_number,
        ContentLength=length,
        **checksum,
    )


def presigned_post(connection: Connection, key: str, fields: dict, conditions: list, seconds: int) -> dict:
    """boto3's generate_presigned_post for one key: {"url", "fields"}, the same policy
    and signature, without the request machinery boto3 runs again for every key.

    That machinery (endpoint rules, parameter checks, events) was three quarters
    of the call and gives the same URL and signing region for every key of a
    bucket, so `post_target` asks boto3 for them once per client and bucket; the
    policy is then signed here with botocore's own POST signer, as boto3 signs it.
    Keys that only boto3's default chain knows are left to boto3 itself.
    """
    keys = connection.credentials
    if keys.access_key_id is None or keys.secret_access_key is None:
        return connection.presign_client.generate_presigned_post(
            Bucket=connection.bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=seconds
        )
    url, region = post_target(connection)
    expiration = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    request = AWSRequest(method="POST", url=url)
    # What boto3 adds to the caller's fields and conditions, in its order.
    request.context["s3-presign-post-fields"] = {**fields, "key": key}
    request.context["s3-presign-post-policy"] = {
        "expiration": expiration.strftime(ISO8601),
        "conditions": [*conditions, {"bucket": connection.bucket}, {"key": key}],
    }
    signing_keys = ReadOnlyCredentials(keys.access_key_id, keys.secret_access_key, keys.session_token)
    S3SigV4PostAuth(signing_keys, "s3", region).add_auth(request)
    return {"url": url, "fields": request.context["s3-presign-post-fields"]}


# {presign client: {bucket: (url, signing region)}}, learned from boto3 once each.
_post_targets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def post_target(connection: Connection) -> tuple[str, str]:
    """The URL a POST to the bucket goes to and the region boto3 signs it for,
    as boto3's own presigned POST for this client and bucket says."""
    targets = _post_targets.setdefault(connection.presign_client, {})
    if connection.bucket not in targets:
        sample = connection.presign_client.generate_presigned_post(Bucket=connection.bucket, Key="sample")
        region = sample["fields"]["x-amz-credential"].split("/")[2]
        targets[connection.bucket] = (sample["url"], region)
    return targets[connection.bucket]
