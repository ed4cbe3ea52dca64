"""Bucket-level S3 calls for the `files-s3` commands, through a source's own client.

`S3Storage.call` turns every error into our own types, which is right for
serving files; the commands also need to tell "this bucket has no CORS
configuration" from a failure, and to see the raw answer (its `Date` header).
"""

from __future__ import annotations

import asyncio
from functools import partial

from botocore.exceptions import ClientError


def not_permitted(ask: str) -> str:
    """How every command reports a bucket-level call these keys may not make.

    Keys scoped to one tenant's prefix are refused every bucket-wide call;
    that is their design, not a fault, so the message says who can help.
    """
    return f"not permitted with these credentials (ask the bucket owner to {ask})"


def error_code(ex: BaseException) -> str:
    """The S3 error code of a botocore ClientError, or ''."""
    if isinstance(ex, ClientError):
        return str(ex.response.get("Error", {}).get("Code", ""))
    return ""


async def raw_call(storage, operation: str, **params):
    """One boto3 call on the source's client with its bucket filled in; errors are not translated."""
    connection = await storage.connection()
    method = getattr(connection.client, operation)
    return await asyncio.to_thread(partial(method, **{"Bucket": connection.bucket, **params}))


async def optional_call(storage, operation: str, absent_code: str, **params):
    """Like `S3Storage.call`, but None when S3 answers `absent_code` (e.g. NoSuchCORSConfiguration)."""
    try:
        return await raw_call(storage, operation, **params)
    except Exception as ex:
        if error_code(ex) == absent_code:
            return None
        raise storage.translate_error(ex, operation, None) from None


async def get_cors_rules(storage) -> list[dict]:
    """The bucket's CORS rules; [] when it has none."""
    answer = await optional_call(storage, "get_bucket_cors", "NoSuchCORSConfiguration")
    return answer["CORSRules"] if answer else []


async def put_cors_rules(storage, rules: list[dict]) -> None:
    """Replace the bucket's CORS rules."""
    await storage.call("put_bucket_cors", CORSConfiguration={"CORSRules": rules})


async def get_lifecycle_rules(storage) -> list[dict]:
    """The bucket's lifecycle rules; [] when it has none."""
    answer = await optional_call(
        storage, "get_bucket_lifecycle_configuration", "NoSuchLifecycleConfiguration"
    )
    return answer["Rules"] if answer else []


async def put_lifecycle_rules(storage, rules: list[dict]) -> None:
    """Replace the bucket's lifecycle rules."""
    await storage.call("put_bucket_lifecycle_configuration", LifecycleConfiguration={"Rules": rules})
