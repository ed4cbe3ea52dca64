"""Where a source's S3 keys come from: a credentials broker, config keys, or
boto3's default chain, in that priority.

A broker is asked with `POST secret=...` (form-encoded) and answers JSON with
`AccessKeyId`, `SecretAccessKey`, `SessionToken`, `Expiration` and `S3Folder`
(`s3://bucket/prefix/`). Credentials are fetched again a margin *before* they
expire, one refresh at a time however many requests are waiting. The margin is
at least the longest URL the source signs, so a URL signed just before a
refresh still lives as long as its config says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlparse

import httpx

from .config import CLOCK_SKEW_SECONDS, S3SourceConfig, normalize_prefix, safe_host
from .errors import CredentialsUnavailable

logger = logging.getLogger("datasette_files_s3")

# Refresh at least this long before expiry (or a quarter of the lifetime when
# that is shorter), and earlier still when a signed URL must outlive it.
REFRESH_MARGIN_SECONDS = 300
# The whole broker call, connect to last byte: a broker that sends one byte at
# a time must not hold a request (or Datasette's shutdown) for longer.
BROKER_TIMEOUT_SECONDS = 10
# A broker's answer is a few hundred bytes of JSON: more is refused unread.
BROKER_MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Credentials:
    """One set of keys plus the bucket and prefix they are for.

    `access_key_id` of None means "let boto3 find keys" (its default chain).
    repr() never shows the secret parts.
    """

    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None  # epoch seconds
    bucket: str | None = None
    prefix: str = ""
    refresh_at: float | None = None

    def seconds_left(self, now: float | None = None) -> float | None:
        """Seconds until these credentials stop working, or None if they don't expire."""
        if self.expires_at is None:
            return None
        return self.expires_at - (now if now is not None else time.time())

    def needs_refresh(self, now: float | None = None) -> bool:
        """True once we are inside the refresh margin."""
        if self.refresh_at is None:
            return False
        return (now if now is not None else time.time()) >= self.refresh_at


def parse_expiration(value: str) -> float:
    """ISO 8601 (`2026-11-24T10:00:00Z`) to epoch seconds, UTC when no zone is given."""
    parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_s3_folder(value: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` to ("bucket", "some/prefix/")."""
    parsed = urlparse(str(value))
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError("S3Folder must look like s3://bucket/prefix/")
    if any(part in (".", "..") for part in parsed.path.strip("/").split("/")):
        raise ValueError("S3Folder prefix must not contain '.' or '..'")
    return parsed.netloc, normalize_prefix(parsed.path)


def refresh_time(fetched_at: float, expires_at: float, longest_url: float = 0) -> float:
    """When to fetch again: early enough that a URL signed just before still
    lives `longest_url` seconds (plus clock skew) on these keys.

    Keys too short-lived for that are still used for half their lifetime, so
    the broker is asked at most twice per lifetime; URLs signed in the second
    half are then shortened to what the keys have left (see presign_seconds).
    """
    lifetime = max(expires_at - fetched_at, 0)
    margin = max(min(REFRESH_MARGIN_SECONDS, lifetime / 4), longest_url + CLOCK_SKEW_SECONDS)
    return expires_at - min(margin, lifetime / 2)


def credentials_from_broker_json(payload, fetched_at: float, longest_url: float = 0) -> Credentials:
    """Validate a broker's JSON answer; ValueError says which field is wrong."""
    if not isinstance(payload, dict):
        raise ValueError("the answer is not a JSON object")
    for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"):
        if not isinstance(payload.get(name), str) or not payload.get(name):
            raise ValueError(f"the answer has no {name}")
    try:
        expires_at = parse_expiration(payload["Expiration"])
    except ValueError:
        raise ValueError("the answer's Expiration is not an ISO 8601 time") from None
    bucket, prefix = None, ""
    if payload.get("S3Folder"):
        bucket, prefix = parse_s3_folder(payload["S3Folder"])
    return Credentials(
        access_key_id=payload["AccessKeyId"],
        secret_access_key=payload["SecretAccessKey"],
        session_token=payload["SessionToken"],
        expires_at=expires_at,
        bucket=bucket,
        prefix=prefix,
        refresh_at=refresh_time(fetched_at, expires_at, longest_url),
    )


class CredentialsProvider:
    """Gives the current credentials for one source."""

    async def get(self) -> Credentials:
        """Current credentials, fetching or refreshing them if needed."""
        raise NotImplementedError


class StaticCredentialsProvider(CredentialsProvider):
    """Keys written in the source's config, or (with none) boto3's default chain."""

    def __init__(self, config: S3SourceConfig):
        self._credentials = Credentials(
            access_key_id=config.access_key_id,
            secret_access_key=config.secret_access_key,
            session_token=config.session_token,
            bucket=config.bucket,
            prefix=config.prefix,
        )

    async def get(self) -> Credentials:
        return self._credentials


class BrokerCredentialsProvider(CredentialsProvider):
    """Short-lived keys from an HTTP credentials broker, refreshed before expiry."""

    def __init__(
        self,
        config: S3SourceConfig,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self._source = config.source
        self._longest_url = config.longest_url_seconds
        self._clock = clock  # injectable so tests can move time without sleeping
        self._url = config.credentials_url
        self._secret = config.credentials_url_secret
        self._fallback_bucket = config.bucket
        self._fallback_prefix = config.prefix
        self._transport = transport
        self._current: Credentials | None = None
        self._refreshing: asyncio.Future | None = None

    @property
    def broker_host(self) -> str:
        """The broker's host, safe to print (the URL may carry user info or a query token)."""
        return safe_host(self._url)

    async def get(self) -> Credentials:
        """The current keys. Keys inside their refresh margin but still valid are
        served at once while one refresh runs in the background; only a caller
        with no valid keys waits for the broker (at most BROKER_TIMEOUT_SECONDS)."""
        now = self._clock()
        current = self._current
        if current is not None and not current.needs_refresh(now):
            return current
        refresh = self._refresh_started()
        if current is not None and (current.seconds_left(now) or 0) > 0:
            return current
        return await asyncio.shield(refresh)

    async def wait_for_refresh(self) -> None:
        """Wait for a refresh in progress, if any (its failure is logged, not raised)."""
        if self._refreshing is not None:
            await asyncio.wait([self._refreshing])

    def _refresh_started(self) -> asyncio.Future:
        """The refresh in progress, or a new one: one at a time however many ask."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
            # Nobody may await a background refresh: its failure must not go unread.
            self._refreshing.add_done_callback(lambda task: task.cancelled() or task.exception())
        return self._refreshing

    async def _refresh(self) -> Credentials:
        previous = self._current
        try:
            self._current = await self._fetch()
        except CredentialsUnavailable:
            # Keys that are merely inside the refresh margin still work:
            # keep serving them while the broker is down.
            if previous is not None and (previous.seconds_left(self._clock()) or 0) > 0:
                logger.warning(
                    "datasette-files source '%s': credentials refresh failed, "
                    "using current credentials until they expire",
                    self._source,
                )
                return previous
            raise
        return self._current

    async def _fetch(self) -> Credentials:
        fetched_at = self._clock()
        failure = f"datasette-files source '{self._source}': credentials broker at {self.broker_host}"
        try:
            status, body = await asyncio.wait_for(self._ask_broker(failure), BROKER_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            raise CredentialsUnavailable(
                f"{failure} did not answer within {BROKER_TIMEOUT_SECONDS} seconds"
            ) from None
        except httpx.HTTPError as ex:
            raise CredentialsUnavailable(f"{failure} could not be reached ({type(ex).__name__})") from None
        if status != 200:
            raise CredentialsUnavailable(f"{failure} answered HTTP {status}")
        try:
            credentials = credentials_from_broker_json(json.loads(body), fetched_at, self._longest_url)
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors; JSON nested
        # deeper than the recursion limit (it fits in the 64 KiB) is a RecursionError.
        except (ValueError, RecursionError) as ex:
            raise CredentialsUnavailable(f"{failure} gave unusable credentials: {ex}") from None
        if credentials.bucket is None:
            if not self._fallback_bucket:
                raise CredentialsUnavailable(f"{failure} sent no S3Folder and the source has no bucket")
            credentials = Credentials(
                **{
                    **credentials.__dict__,
                    "bucket": self._fallback_bucket,
                    "prefix": self._fallback_prefix,
                }
            )
        return credentials

    async def _ask_broker(self, failure: str) -> tuple[int, bytes]:
        """POST the secret; (status, body), reading at most BROKER_MAX_ANSWER_BYTES."""
        async with httpx.AsyncClient(timeout=BROKER_TIMEOUT_SECONDS, transport=self._transport) as client:
            async with client.stream("POST", self._url, data={"secret": self._secret}) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > BROKER_MAX_ANSWER_BYTES:
                        raise CredentialsUnavailable(
                            f"{failure} sent an answer over {BROKER_MAX_ANSWER_BYTES} bytes: refused"
                        )
                return response.status_code, bytes(body)


def provider_for(config: S3SourceConfig) -> CredentialsProvider:
    """The provider a source's config calls for: broker, then static keys, then default chain."""
    if config.credentials_url:
        return BrokerCredentialsProvider(config)
    return StaticCredentialsProvider(config)
