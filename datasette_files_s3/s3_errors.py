"""How boto3's and botocore's errors become this plugin's: the one translation.

Every S3 call of the gateway (s3_gateway.py) fails with what `translate_error`
returns, and doctor judges its raw answers by the same function, so a code
S3 sends means one thing everywhere. Messages name the source and never hold a
key, a token or a presigned URL.
"""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from .config import S3SourceConfig, safe_host
from .errors import (
    BucketMissing,
    BucketUnusable,
    CredentialsUnavailable,
    NotPermitted,
    S3Unreachable,
    StorageUnavailable,
)

MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
# S3's ways of saying "these keys may not use this bucket".
DENIED_CODES = {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
EXPIRED_CODES = {"ExpiredToken", "TokenRefreshRequired", "RequestExpired", "InvalidToken"}


def s3_error_code(ex: BaseException) -> str:
    """S3's error code from a botocore ClientError's parsed response, or ''."""
    if isinstance(ex, ClientError):
        return str(ex.response.get("Error", {}).get("Code", ""))
    return ""


def translate_error(
    ex: Exception, config: S3SourceConfig, operation: str, key: str | None = None, bucket: str | None = None
) -> Exception:
    """Map a boto3 error to FileNotFoundError or a StorageUnavailable naming the source.

    A "not found" answer to a call that names no key (HeadBucket answers a bare
    404) is about the bucket.
    """
    where = f"datasette-files source '{config.source}'"
    bucket = bucket or config.bucket or "(from broker)"
    if isinstance(ex, ClientError):
        code = s3_error_code(ex)
        if code in MISSING_CODES and key is not None:
            return FileNotFoundError(f"{where}: no object at {key}")
        if code == "NoSuchBucket" or code in MISSING_CODES:
            return BucketMissing(
                f"{where}: bucket '{bucket}' does not exist "
                "(check the source's bucket setting, or create the bucket)",
                code,
            )
        if code in EXPIRED_CODES:
            return CredentialsUnavailable(f"{where}: S3 credentials have expired ({operation}: {code})", code)
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
        internal = safe_host(config.endpoint_url or "https://s3.amazonaws.com")
        shown = safe_host(config.public_endpoint_url) if config.public_endpoint_url else internal
        error = S3Unreachable(
            f"{where}: cannot reach the S3 endpoint {shown} ({operation}: {type(ex).__name__})"
        )
        if shown != internal:
            error.log_detail = f"endpoint_url {internal}"
        return error
    if isinstance(ex, (FileNotFoundError, StorageUnavailable)):
        return ex
    return StorageUnavailable(f"{where}: S3 {operation} failed ({type(ex).__name__})")
