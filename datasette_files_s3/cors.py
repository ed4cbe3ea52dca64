"""The bucket CORS rule browser uploads need, merging it into a bucket's
existing rules, and checking a bucket's answer to real preflight requests.

Everything but `preflight` is pure: rules in, rules out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

# Our rule carries this ID so that `cors --apply` can find and update it later.
RULE_ID = "datasette-files-s3"
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


def needed_rule(origins: list[str]) -> dict:
    """The CORS rule this plugin needs for these origins, as S3's API spells it."""
    return {
        "ID": RULE_ID,
        "AllowedOrigins": sorted(set(origins)),
        "AllowedMethods": list(METHODS),
        "AllowedHeaders": list(ALLOWED_HEADERS),
        "ExposeHeaders": list(EXPOSE_HEADERS),
        "MaxAgeSeconds": MAX_AGE_SECONDS,
    }


def merge_rules(existing: list[dict], origins: list[str]) -> list[dict]:
    """The bucket's rules with ours added or updated; every other rule is kept as it was.

    Origins already in our rule are kept (run the command again with another
    origin and both work). Our rule goes first: S3 uses the first rule that
    matches a request, and a broader rule of someone else's for the same origin
    would otherwise decide whether `ETag` is exposed.
    """
    ours = [rule for rule in existing if rule.get("ID") == RULE_ID]
    others = [rule for rule in existing if rule.get("ID") != RULE_ID]
    known = [origin for rule in ours for origin in rule.get("AllowedOrigins", [])]
    return [needed_rule(known + list(origins))] + others


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
