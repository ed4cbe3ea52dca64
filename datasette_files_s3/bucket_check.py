"""Remembering, for a while, that a source's bucket is there and lets us in.

Signing a presigned POST never contacts S3, so without a check a missing
bucket or refused keys would surface only in the browser, as an opaque network
or CORS failure. `S3Storage.check_bucket` asks S3 once; this module decides
when it needs asking again. Only a success is remembered: for `VERIFIED_SECONDS`,
and only for the credentials it was made with (a broker's new keys, which may
name another bucket or prefix, are checked afresh). A failure is
never remembered, so a bucket created after the error is found by the next
request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# How long a successful check stands. Within it a deleted bucket or revoked
# keys are noticed only by calls that reach S3 (and those call forget()).
VERIFIED_SECONDS = 300.0


class BucketCheck:
    """One source's last successful check, and a lock so that concurrent
    requests wait for one check instead of each sending their own."""

    def __init__(self, ttl: float = VERIFIED_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._verified_for: object | None = None
        self._verified_until = 0.0
        self._lock = asyncio.Lock()

    def holds_for(self, credentials: object) -> bool:
        """A success with these credentials is remembered and still fresh."""
        return self._verified_for is credentials and self.clock() < self._verified_until

    def forget(self) -> None:
        """Check again next time: S3 has just said the bucket is missing or refuses us."""
        self._verified_for = None

    async def ensure(self, credentials: object, probe: Callable[[], Awaitable[object]]) -> None:
        """Await `probe()` unless a success with `credentials` is still fresh.

        The probe's exception, if any, is the caller's answer; nothing is remembered then.
        """
        if self.holds_for(credentials):
            return
        async with self._lock:
            if self.holds_for(credentials):
                return  # another request checked while this one waited
            await probe()
            self._verified_for = credentials
            self._verified_until = self.clock() + self.ttl
