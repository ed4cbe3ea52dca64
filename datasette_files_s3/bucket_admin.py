"""Bucket-level S3 calls for the `files-s3` commands, through a source's own client.

`S3Storage.call` turns every error into our own types, which is right for
serving files; the commands also need to tell "this bucket has no CORS
configuration" from a failure, and to see the raw answer (its `Date` header).
"""

from __future__ import annotations

from .errors import StorageUnavailable


def not_permitted(ask: str) -> str:
    """How every command reports a bucket-level call these keys may not make.

    Keys scoped to one tenant's prefix are refused every bucket-wide call;
    that is their design, not a fault, so the message says who can help.
    """
    return f"not permitted with these credentials (ask the bucket owner to {ask})"


async def optional_call(storage, operation: str, absent_code: str, **params):
    """Like `S3Storage.call`, but None when S3 answers `absent_code` (e.g. NoSuchCORSConfiguration)."""
    try:
        return await storage.call(operation, **params)
    except StorageUnavailable as ex:
        if ex.code == absent_code:
            return None
        raise


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
