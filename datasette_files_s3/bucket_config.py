"""The bucket's own configuration that this plugin needs, in one place: the
CORS rule browser uploads need and the lifecycle rule that aborts abandoned
multipart uploads. Building them, merging them into a bucket's existing rules,
reading and writing them, and checking them (a lifecycle rule's coverage, a
bucket's answer to real preflight requests).

The rules are pure: rules in, rules out. `cors` and `doctor` use the checks,
`cors --apply` and `cleanup --lifecycle` the writes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import httpx

from .errors import StorageUnavailable

# --- CORS ----------------------------------------------------------------------

# Our rule carries this ID so that `cors --apply` can find and update it later.
CORS_RULE_ID = "datasette-files-s3"
METHODS = ["GET", "HEAD", "POST", "PUT"]
# The methods a browser upload sends cross-origin: POST (presigned form) and PUT (parts).
UPLOAD_METHODS = ("POST", "PUT")
# Presigned requests sign their own headers; the browser adds Content-Type and
# may add checksum headers, so any request header is allowed.
ALLOWED_HEADERS = ["*"]
# The multipart uploader reads each part's ETag from the PUT response.
EXPOSE_HEADERS = ["ETag"]
MAX_AGE_SECONDS = 3000

_ORIGIN_RE = re.compile(r"^https?://[^/\s?#]+$")


def normalize_origin(origin: str) -> str:
    """`https://Example.com/` to `https://example.com`; ValueError if it is not an origin."""
    origin = origin.strip().rstrip("/")
    if not _ORIGIN_RE.match(origin):
        raise ValueError(
            f"{origin!r} is not an origin: give scheme and host (and port), e.g. https://datasette.example.com"
        )
    scheme, rest = origin.split("://", 1)
    return f"{scheme.lower()}://{rest.lower()}"


def needed_cors_rule(origins: list[str]) -> dict:
    """The CORS rule this plugin needs for these origins, as S3's API spells it."""
    return {
        "ID": CORS_RULE_ID,
        "AllowedOrigins": sorted(set(origins)),
        "AllowedMethods": list(METHODS),
        "AllowedHeaders": list(ALLOWED_HEADERS),
        "ExposeHeaders": list(EXPOSE_HEADERS),
        "MaxAgeSeconds": MAX_AGE_SECONDS,
    }


def merge_cors_rules(existing: list[dict], origins: list[str]) -> list[dict]:
    """The bucket's rules with ours added or updated; every other rule is kept as it was.

    Origins already in our rule are kept (run the command again with another
    origin and both work). Our rule goes first: S3 uses the first rule that
    matches a request, and a broader rule of someone else's for the same origin
    would otherwise decide whether `ETag` is exposed.
    """
    ours = [rule for rule in existing if rule.get("ID") == CORS_RULE_ID]
    others = [rule for rule in existing if rule.get("ID") != CORS_RULE_ID]
    known = [origin for rule in ours for origin in rule.get("AllowedOrigins", [])]
    return [needed_cors_rule(known + list(origins))] + others


def same_cors_rules(a: list[dict], b: list[dict]) -> bool:
    """Whether two lists of CORS rules say the same: a rule's methods are a set,
    in whatever order the store lists them (Ceph RGW keeps its own)."""

    def as_sets(rules):
        return [{**rule, "AllowedMethods": set(rule.get("AllowedMethods", []))} for rule in rules]

    return as_sets(a) == as_sets(b)


def rule_allows(rule: dict, origin: str, method: str) -> bool:
    """Whether one CORS rule lets `origin` send `method` (S3's `*` wildcard in origins)."""
    if method not in rule.get("AllowedMethods", []):
        return False
    for pattern in rule.get("AllowedOrigins", []):
        regex = "^" + re.escape(pattern).replace(r"\*", ".*") + "$"
        if re.match(regex, origin, flags=re.IGNORECASE):
            return True
    return False


def rules_expose_etag(rules: list[dict], origin: str) -> bool:
    """Whether the first rule S3 would use for an upload from `origin` exposes ETag."""
    for rule in rules:
        if rule_allows(rule, origin, "PUT"):
            return any(h.lower() == "etag" for h in rule.get("ExposeHeaders", []))
    return False


# --- CORS, as a browser meets it ----------------------------------------------


@dataclass(frozen=True)
class PreflightResult:
    """What the bucket answered to one preflight request."""

    origin: str
    method: str
    allowed: bool
    detail: str


def header_list(value: str | None) -> list[str]:
    """A comma-separated header value as lower-case items."""
    return [item.strip().lower() for item in (value or "").split(",") if item.strip()]


def judge_preflight(origin: str, method: str, status: int, headers) -> PreflightResult:
    """Did this preflight answer let the browser go on? (Pure, for the headers of a response.)"""
    allow_origin = headers.get("access-control-allow-origin")
    methods = header_list(headers.get("access-control-allow-methods"))
    if status >= 400:
        return PreflightResult(origin, method, False, f"the bucket refused the preflight (HTTP {status})")
    if allow_origin not in (origin, "*"):
        return PreflightResult(origin, method, False, "the answer has no Access-Control-Allow-Origin for it")
    if method.lower() not in methods:
        return PreflightResult(origin, method, False, f"{method} is not in Access-Control-Allow-Methods")
    return PreflightResult(origin, method, True, "allowed")


async def preflight(client: httpx.AsyncClient, url: str, origin: str, method: str) -> PreflightResult:
    """Send the OPTIONS request a browser would send before an upload to `url`."""
    response = await client.request(
        "OPTIONS",
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type",
        },
    )
    return judge_preflight(origin, method, response.status_code, response.headers)


# --- lifecycle ----------------------------------------------------------------

LIFECYCLE_RULE_ID = "datasette-files-s3-abort-multipart"


def lifecycle_rule(prefix: str, older_than: int) -> dict:
    """A lifecycle rule aborting incomplete multipart uploads under the prefix (S3 counts whole days)."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": prefix},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": max(1, math.ceil(older_than / 86400))},
    }


def merge_lifecycle_rules(existing: list[dict], rule: dict) -> list[dict]:
    """The bucket's lifecycle rules with ours added or replaced; others kept as they were."""
    return [r for r in existing if r.get("ID") != rule["ID"]] + [rule]


def lifecycle_covers(rule: dict, prefix: str) -> bool:
    """Whether an enabled rule aborts incomplete multipart uploads for every key under `prefix`."""
    if rule.get("Status") != "Enabled" or not rule.get("AbortIncompleteMultipartUpload"):
        return False
    rule_filter = rule.get("Filter")
    if rule_filter is None:
        rule_prefix = rule.get("Prefix", "")  # the older, filter-less form
    elif set(rule_filter) <= {"Prefix"}:
        rule_prefix = rule_filter.get("Prefix", "")
    else:
        return False  # tag or size filters leave some uploads out
    return prefix.startswith(rule_prefix)


async def lifecycle_plan(storage, older_than: int) -> tuple[list[dict], list[dict]]:
    """(the bucket's current lifecycle rules, the rules after adding ours)."""
    connection = await storage.connection()
    current = await get_lifecycle_rules(storage)
    return current, merge_lifecycle_rules(current, lifecycle_rule(connection.prefix, older_than))


# --- reading and writing the bucket's rules -------------------------------------


def not_permitted(ask: str) -> str:
    """How every command reports a bucket-level call these keys may not make.

    Keys scoped to one tenant's prefix are refused every bucket-wide call;
    that is their design, not a fault, so the message says who can help.
    """
    return f"not permitted with these credentials (ask the bucket owner to {ask})"


async def optional_call(storage, operation: str, absent_code: str, **params):
    """`S3Storage.call`, but None when S3 answers `absent_code` (e.g. NoSuchCORSConfiguration)."""
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
