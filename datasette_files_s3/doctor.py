"""`files-s3 doctor`: check that a source can serve uploads, one `Check` per line.

Each check returns a `Check` (doctor_probe.py: pass / warn / fail, what was
found, how to fix it); rendering is the command's business. The checks of how
single files reach the bucket are in doctor_uploads.py. Nothing here prints, and no message
ever holds a key, a token or a presigned URL (those carry the access key id).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from . import bucket_config, checksums
from .config import CLOCK_SKEW_SECONDS, safe_host
from .doctor_probe import FAIL, PASS, PROBE_BODY, PROBE_DIR, WARN, Check, Probe, post_probe
from .doctor_uploads import check_conditional_writes, check_policy, check_post_object, check_unnamed_fields
from .errors import (
    BucketMissing,
    BucketUnusable,
    CredentialsUnavailable,
    FilesS3Error,
    NotPermitted,
    S3Unreachable,
)

HTTP_TIMEOUT = 10


def endpoint_host(config) -> str:
    """The S3 endpoint's host, safe to print (no user info)."""
    return safe_host(config.endpoint_url) if config.endpoint_url else "AWS S3"


def judge_clock(date_header: str | None, now: float) -> Check:
    """Compare our clock with the S3 server's `Date` header."""
    if not date_header:
        return Check("clock", WARN, "the S3 server sent no Date header, so the clock could not be compared")
    server = parsedate_to_datetime(date_header).timestamp()
    skew = now - server
    if abs(skew) > CLOCK_SKEW_SECONDS:
        direction = "ahead of" if skew > 0 else "behind"
        return Check(
            "clock",
            FAIL,
            f"this machine's clock is {abs(skew):.0f}s {direction} the S3 server's",
            "sync the clock (NTP): presigned URLs and upload expiry checks need it within a minute",
        )
    return Check("clock", PASS, f"agrees with the S3 server within {abs(skew):.0f}s")


def judge_lifecycle(rules: list[dict], prefix: str, fix: str) -> Check:
    """Is there a lifecycle rule that aborts incomplete multipart uploads under the prefix?"""
    for rule in rules:
        if bucket_config.lifecycle_covers(rule, prefix):
            days = rule["AbortIncompleteMultipartUpload"].get("DaysAfterInitiation")
            name = rule.get("ID") or "(no id)"
            return Check(
                "lifecycle", PASS, f"rule '{name}' aborts incomplete multipart uploads after {days}d"
            )
    return Check("lifecycle", WARN, "no lifecycle rule aborts incomplete multipart uploads here", fix)


async def check_credentials(storage) -> Check:
    """Can we get keys? For a broker, say when they expire."""
    config = storage.config
    try:
        credentials = await storage.credentials.get()
    except FilesS3Error as ex:
        return Check(
            "credentials",
            FAIL,
            str(ex),
            "check credentials_url and credentials_url_secret; the broker must answer "
            "POST secret=... with AccessKeyId, SecretAccessKey, SessionToken and Expiration",
        )
    if config.credentials_url:
        left = credentials.seconds_left() or 0
        expires = datetime.fromtimestamp(credentials.expires_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        message = f"from the credentials broker; they expire in {left / 60:.0f} min ({expires})"
        if left < config.upload_expires:
            return Check(
                "credentials",
                WARN,
                message,
                "the broker should issue keys that outlive upload_expires; they are refreshed early",
            )
        return Check("credentials", PASS, message)
    if credentials.access_key_id is None:
        method = await storage.gateway.raw.default_chain_method()
        if method is None:
            return Check(
                "credentials",
                FAIL,
                "no keys in the config and boto3's default chain found none",
                "set access_key_id and secret_access_key, credentials_url, "
                "or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or an instance role)",
            )
        return Check("credentials", PASS, f"from boto3's default chain ({method})")
    return Check("credentials", PASS, f"from {config.credentials_origin}")


async def head_or_list(gateway) -> tuple[dict, str]:
    """HeadBucket's raw answer, and "" - or, when these keys may not HEAD the bucket
    (keys scoped to a prefix never may: HeadBucket is s3:ListBucket with no
    prefix), the answer to listing the prefix, and a note saying so."""
    try:
        return await gateway.raw.call("head_bucket"), ""
    except Exception as ex:
        if not isinstance(gateway.translate(ex, "HeadBucket"), NotPermitted):
            raise
    answer = await gateway.raw.call("list_objects_v2", Under="", MaxKeys=1)
    return answer, "; HeadBucket is not permitted with these credentials, listing the prefix worked"


# S3's ways of saying "the bucket is in another region" (with the region, when
# it says which, in the answer's x-amz-bucket-region header).
WRONG_REGION_CODES = {"301", "PermanentRedirect", "AuthorizationHeaderMalformed"}
# What to do about each kind of failure no other test names.
BUCKET_FIXES = {
    S3Unreachable: "check endpoint_url (scheme, host and port) and that this machine can reach it",
    CredentialsUnavailable: "set access_key_id and secret_access_key, credentials_url, or AWS_ACCESS_KEY_ID",
}


async def check_bucket(storage) -> tuple[Check, str | None]:
    """HEAD the bucket: (check, the server's Date header or None)."""
    gateway = storage.gateway
    connection = await gateway.connection()
    try:
        answer, note = await head_or_list(gateway)
    except Exception as ex:
        headers = gateway.raw.headers(ex)
        refused = judge_bucket_refusal(
            gateway.translate(ex, "HeadBucket"), headers, storage.config, connection
        )
        return refused, headers.get("date")
    headers = gateway.raw.headers(answer)
    actual_region = headers.get("x-amz-bucket-region")
    if actual_region and actual_region != storage.config.region:
        check = wrong_region(connection.bucket, actual_region, storage.config.region)
    else:
        reachable = f"'{connection.bucket}' is reachable at {endpoint_host(storage.config)}"
        check = Check("bucket", PASS, f"{reachable} ({storage.config.region}){note}")
    return check, headers.get("date")


def judge_bucket_refusal(error: Exception, headers: dict, config, connection) -> Check:
    """The bucket check when HeadBucket (or listing the prefix) failed with
    `error` (the translation of S3's answer, whose `headers` are given)."""
    code = getattr(error, "code", "")
    actual_region = headers.get("x-amz-bucket-region")
    if isinstance(error, BucketMissing):
        return Check(
            "bucket",
            FAIL,
            f"bucket '{connection.bucket}' does not exist at {endpoint_host(config)}",
            "create the bucket, or fix the source's bucket option",
        )
    if code in WRONG_REGION_CODES or (actual_region and actual_region != config.region):
        return wrong_region(connection.bucket, actual_region, config.region)
    if isinstance(error, BucketUnusable):
        return Check(
            "bucket",
            FAIL,
            f"S3 denied access to bucket '{connection.bucket}' ({code})",
            "check the keys (access_key_id / secret_access_key or the broker's) and the bucket policy",
        )
    # The operator runs doctor: the host browsers are not shown is theirs to see.
    detail = f" [{error.log_detail}]" if getattr(error, "log_detail", "") else ""
    fix = next((fix for kind, fix in BUCKET_FIXES.items() if isinstance(error, kind)), None)
    return Check("bucket", FAIL, f"{error}{detail}", fix)


def wrong_region(bucket: str, actual: str | None, configured: str) -> Check:
    """The bucket check when S3 says the bucket is in another region (`actual`, when it says which)."""
    return Check(
        "bucket",
        FAIL,
        f"bucket '{bucket}' is in region {actual or '(another)'}, not {configured}",
        f"set region: {actual}" if actual else "set region to the bucket's region",
    )


async def check_cors(storage, probe: Probe, origins: list[str], fix_command: str) -> list[Check]:
    """Send real preflights for POST and PUT from each origin, and check ETag is exposed."""
    if not storage.config.direct_uploads:
        return [Check("cors", PASS, "direct_uploads is off: browsers never send requests to the bucket")]
    if not origins:
        return [
            Check(
                "cors",
                WARN,
                "not checked: no --origin given",
                "pass --origin with the address Datasette is served from, e.g. https://datasette.example.com",
            )
        ]
    # Where the browser sends uploads: the presigning endpoint, a key nobody has written.
    url = await storage.gateway.raw.address(f"{PROBE_DIR}/{uuid.uuid4().hex}")
    rules = None
    checks = []
    for origin in origins:
        fix = f"{fix_command} --origin {origin} --apply"
        try:
            results = [
                await bucket_config.preflight(probe.http, url, origin, m)
                for m in bucket_config.UPLOAD_METHODS
            ]
        except httpx.HTTPError as ex:
            checks.append(Check(f"cors {origin}", FAIL, f"preflight request failed ({type(ex).__name__})"))
            continue
        refused = [r for r in results if not r.allowed]
        if refused:
            detail = "; ".join(f"{r.method}: {r.detail}" for r in refused)
            checks.append(Check(f"cors {origin}", FAIL, f"preflight refused ({detail})", fix))
            continue
        exposed = await probe.etag_exposed(origin)
        if exposed is None:
            try:
                if rules is None:
                    rules = await bucket_config.get_cors_rules(storage)
            except NotPermitted:
                message = bucket_config.not_permitted(
                    f"check that the bucket's CORS rule for {origin} exposes ETag"
                )
                checks.append(Check(f"cors {origin}", WARN, f"ETag exposure not checked: {message}"))
                continue
            except FilesS3Error as ex:
                checks.append(Check(f"cors {origin}", WARN, f"ETag exposure not checked: {ex}", fix))
                continue
            exposed = bucket_config.rules_expose_etag(rules, origin)
        if not exposed:
            checks.append(
                Check(
                    f"cors {origin}",
                    FAIL,
                    "POST and PUT allowed, but ETag is not exposed (multipart uploads cannot finish)",
                    fix,
                )
            )
            continue
        checks.append(Check(f"cors {origin}", PASS, "POST and PUT allowed, ETag exposed"))
    return checks


async def check_lifecycle(storage, fix: str) -> Check:
    """A rule should abort incomplete multipart uploads, so abandoned parts stop costing money."""
    connection = await storage.connection()
    try:
        rules = await bucket_config.get_lifecycle_rules(storage)
    except NotPermitted:
        ask = f"check that a lifecycle rule aborts incomplete multipart uploads under '{connection.prefix}'"
        return Check("lifecycle", WARN, bucket_config.not_permitted(ask))
    except FilesS3Error as ex:
        return Check("lifecycle", WARN, f"could not read lifecycle rules: {ex}", fix)
    return judge_lifecycle(rules, connection.prefix, fix)


async def run_checks(
    storage, origins: list[str], command: str = "datasette files-s3", options: str = ""
) -> list[Check]:
    """Every check for one configured source, in order; stops early when the rest cannot run.

    `command` and `options` (e.g. ` -c datasette.yaml`) are used to write the fixes.
    """
    source = storage.source
    checks = [await check_credentials(storage)]
    if checks[-1].status == FAIL:
        return checks
    bucket_check, date_header = await check_bucket(storage)
    checks.append(bucket_check)
    if bucket_check.status == FAIL:
        return checks
    checks.append(judge_clock(date_header, time.time()))
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        probe = Probe(storage, http)
        checks.append(await probe.write())
        try:
            if probe.written:
                checks.append(await probe.read())
                checks.append(await probe.range_read())
                checks.append(await probe.presign())
                checks.append(await check_policy(storage, http))
                checks.append(await check_unnamed_fields(storage, http))
            checks.extend(await check_cors(storage, probe, origins, f"{command} cors {source}{options}"))
            checks.append(await check_checksums(storage, http))
            checks.append(await check_post_object(storage, http))
            checks.append(await check_conditional_writes(storage, http))
        finally:
            if probe.written:
                checks.append(await probe.delete())
    checks.append(await check_lifecycle(storage, f"{command} cleanup {source}{options} --lifecycle"))
    return checks


# --- checksum: does the store take, and check, a SHA-256? --------------------

WRONG_SHA256 = checksums.parse_sha256("0" * 64)


async def part_probe(storage, http: httpx.AsyncClient, sha256: str) -> int | None:
    """PUT the probe body as part 1 of an upload created with SHA-256 checksums,
    its URL signing `sha256`; the HTTP status, or None when create was refused."""
    path = f"{PROBE_DIR}/{uuid.uuid4().hex}.bin"
    try:
        upload_id = await storage.create_multipart(path, "text/plain", checksum_algorithm=checksums.ALGORITHM)
    except FilesS3Error:
        return None
    try:
        url = await storage.presign_part(path, upload_id, 1, len(PROBE_BODY), 60, sha256=sha256)
        response = await http.put(url, content=PROBE_BODY, headers={"x-amz-checksum-sha256": sha256})
        return response.status_code
    finally:
        await storage.abort_multipart(path, upload_id)


async def check_checksums(storage, http: httpx.AsyncClient) -> Check:
    """Send the probe with its right SHA-256, then a wrong one, as a POST and as a
    part: a store that refuses the wrong one checks them (checksum: sha256); one
    that refuses the right one does not take them at all (checksum: none)."""
    if not storage.config.direct_uploads:
        return Check("checksum", PASS, "direct_uploads is off: browsers never send checksums to the bucket")
    right = checksums.parse_sha256(hashlib.sha256(PROBE_BODY).hexdigest())
    try:
        post = [await post_probe(storage, http, value) < 300 for value in (right, WRONG_SHA256)]
        part = [(await part_probe(storage, http, value) or 999) < 300 for value in (right, WRONG_SHA256)]
    except (FilesS3Error, httpx.HTTPError) as ex:
        return Check("checksum", WARN, f"not checked: {ex}")
    return judge_checksums(post, part, storage.config.checksum)


def judge_checksums(post: list[bool], part: list[bool], setting: str) -> Check:
    """The checksum Check from whether a POST and a part were accepted with
    [their right SHA-256, a wrong one], given the source's `checksum` setting."""
    if not (post[0] and part[0]):
        refused = " and ".join(w for w, ok in (("POST", post[0]), ("part", part[0])) if not ok)
        message = f"the store refuses a SHA-256 checksum on a {refused}"
        if setting == "sha256":
            return Check("checksum", FAIL, message, "set checksum: none for this source")
        return Check("checksum", PASS, message + "; checksum: none is right")
    verified = [w for w, accepted in (("POST", post[1]), ("part", part[1])) if not accepted]
    if len(verified) == 2:
        if setting == "none":
            return Check(
                "checksum", WARN, "the store checks SHA-256 on POSTs and parts", "set checksum: sha256"
            )
        return Check(
            "checksum", PASS, "the store checks SHA-256 on POSTs and parts (a wrong one was refused)"
        )
    unchecked = " and ".join(w for w in ("POST", "part") if w not in verified)
    return Check(
        "checksum",
        WARN,
        f"the store takes a SHA-256 on a {unchecked} but does not check it (a wrong one was accepted)",
        "keep checksum: sha256: complete still compares what the store reports, and hashes a POST it "
        "reports none for; a swapped object is refused at download (README, Security)",
    )
