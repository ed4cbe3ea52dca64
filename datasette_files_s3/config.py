"""Parse and validate one `storage: s3` source's `config:` block.

Everything here is pure: a dict goes in, an `S3SourceConfig` or a
`ConfigError` naming the source and the option comes out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from urllib.parse import urlparse, urlsplit

from botocore.exceptions import InvalidRegionError
from botocore.handlers import VALID_BUCKET, VALID_S3_ARN
from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url, validate_region_name

from .errors import ConfigError

# S3's own limits: one PUT/POST holds at most 5 GiB, an object at most 5 TiB.
S3_MAX_SINGLE_UPLOAD = 5 * 1024**3
S3_MAX_OBJECT_SIZE = 5 * 1024**4
# Tolerated difference between our clock and the S3 server's (or the broker's).
CLOCK_SKEW_SECONDS = 60

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_MIME_PATTERN_RE = re.compile(r"^[\w.+-]+/([\w.+-]+|\*)$|^\*/\*$")


@dataclass(frozen=True)
class S3SourceConfig:
    """A validated source configuration. Secrets are kept out of repr()."""

    source: str
    bucket: str | None = None
    region: str = "us-east-1"
    prefix: str = ""
    endpoint_url: str | None = None
    public_endpoint_url: str | None = None
    addressing_style: str = "auto"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    credentials_url: str | None = None
    credentials_url_secret: str | None = field(default=None, repr=False)
    max_file_size: int = S3_MAX_OBJECT_SIZE
    allowed_content_types: tuple[str, ...] = ()
    upload_expires: int = 900
    download_expires: int = 300
    # With `checksum: sha256` the default is HASHED_MULTIPART_THRESHOLD (see below).
    multipart_threshold: int = 64 * 1024**2
    multipart_expires: int = 24 * 3600
    thumbnail_max_size: int = 10 * 1024**2
    # The most of one object Datasette will hold in memory at once (read_file:
    # datasette-files' CSV import and its previews). Larger files are refused
    # with a message, never read: one GET must not grow the server by a file.
    max_read_size: int = 10 * 1024**2
    # False: datasette-files' own prepare/upload endpoints carry the bytes
    # through Datasette (streamed to S3) - for buckets browsers cannot reach.
    direct_uploads: bool = True
    # Per actor: direct uploads prepared but not completed, and multipart
    # uploads open, that have not yet expired. Far above what a person's
    # uploader ever holds (datasette-files' sends one file at a time, ours three).
    max_pending_uploads: int = 100
    max_open_multipart_uploads: int = 20
    # "sha256": uploads carry a SHA-256 the store checks (x-amz-checksum-sha256);
    # "none" for stores that refuse those headers (Backblaze B2, for one).
    checksum: str = "sha256"
    # How a file below multipart_threshold goes to the bucket: "post" (a form
    # POST, no CORS preflight), "put" (a presigned PUT: for stores that answer
    # POST Object with 501, R2 and B2 among them), or "auto": POST until the
    # store answers 501, then PUT.
    upload_method: str = "auto"

    @property
    def longest_url_seconds(self) -> int:
        """The longest a URL we sign for this source may live: upload, part or download."""
        return max(self.upload_expires, self.download_expires)

    @property
    def credentials_origin(self) -> str:
        """Where the credentials come from, in words (never the credentials themselves): the one
        description `sources` and `doctor` print."""
        if self.credentials_url:
            return f"credentials broker at {safe_host(self.credentials_url)}"
        if self.access_key_id:
            return "config keys" + (" with session token" if self.session_token else "")
        return "boto3 default chain (environment, ~/.aws, instance role)"


# Options whose values are secrets: never printed, never stored (see files_bridge).
SECRET_OPTIONS = ("secret_access_key", "session_token", "credentials_url_secret")


def safe_url(url: str | None) -> str:
    """A URL without user info, query or fragment (those may carry secrets): the
    one way a URL from the config reaches a message, a log or a stored row."""
    if not url:
        return ""
    parsed = urlparse(url)
    return f"{parsed.scheme}://{safe_host(url)}{parsed.path}"


def safe_host(url: str) -> str:
    """A URL's host and port, without the user info `netloc` would include."""
    parsed = urlparse(url)
    return (parsed.hostname or "") + (f":{parsed.port}" if parsed.port else "")


def normalize_prefix(prefix: str) -> str:
    """`uploads`, `/uploads` and `uploads/` all become `uploads/`; `` stays ``."""
    prefix = prefix.strip().strip("/")
    return prefix + "/" if prefix else ""


def parse_size(value, what: str) -> int:
    """An int, or a string such as `500MB` / `5GiB`, as a number of bytes."""
    try:
        return size(value)
    except ValueError as ex:
        raise ValueError(f"{what} {ex}") from None


def size(value) -> int:
    """A size in bytes: an int, or a string such as `500MB` / `5GiB`."""
    if isinstance(value, bool):
        raise ValueError("must be a size in bytes, e.g. 104857600 or '100MiB'")
    if isinstance(value, int):
        number = value
    else:
        match = _SIZE_RE.match(str(value))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _UNITS:
            raise ValueError("must be a size in bytes, e.g. 104857600 or '100MiB'")
        number = float(match.group(1)) * _UNITS[unit]
        if not math.isfinite(number):  # a string of 309 digits or more is an infinite float
            raise ValueError("must be a size in bytes, e.g. 104857600 or '100MiB'")
        number = int(number)
    if number <= 0:
        raise ValueError("must be greater than zero")
    return number


# The default multipart_threshold when uploads carry a SHA-256. A single POST
# must be hashed whole, in the browser's memory, before its first byte is sent;
# parts are hashed one at a time while the others are on the wire. Measured in
# Chromium (docs/integrity.md): 64 MiB as one POST held +139 MiB in the renderer
# and ran at 0.62x the speed without checksums; as 16 MiB parts, 1.04x.
HASHED_MULTIPART_THRESHOLD = 16 * 1024**2
SEVEN_DAYS = 7 * 24 * 3600


# --- one parser a kind of option: a value in, the parsed value out, or a
# ValueError whose text follows "option '<name>'" in the ConfigError ----------


def text(value) -> str:
    """A string option, without surrounding white space."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value.strip()


def http_url(value) -> str:
    """An http:// or https:// URL with a host and, if any, a port number.

    (httpx refuses another port only when the broker is called, and not as one
    of its HTTPErrors.) Never echoed: a URL may carry a secret."""
    value = text(value)
    if not re.match(r"^https?://[^/\s]+\S*$", value):
        raise ValueError("must be an http:// or https:// URL")
    try:
        _ = urlsplit(value).port  # ValueError: not a number from 0 to 65535
    except ValueError:
        raise ValueError("must be an http:// or https:// URL with a port from 0 to 65535") from None
    return value


# The options below are checked as botocore checks them when it makes a client,
# which happens at the first request: a value it refuses would make every
# request to the source a 500, instead of one line at startup.


def endpoint_url(value) -> str:
    """An S3 endpoint: an http(s) URL whose host is a DNS name, IPv4 or [IPv6] address."""
    value = http_url(value)
    if not (is_valid_endpoint_url(value) or is_valid_ipv6_endpoint_url(value)):
        raise ValueError("must be an http:// or https:// URL whose host is a valid host name or address")
    return value


def region(value) -> str:
    """An AWS region name: one DNS label, such as us-east-1."""
    value = text(value)
    try:
        validate_region_name(value)
    except InvalidRegionError:
        raise ValueError("must be a region name such as us-east-1 (letters, digits and '-')") from None
    return value


def bucket(value) -> str:
    """A bucket name (or access point ARN) as botocore accepts it."""
    value = text(value)
    if value and not (VALID_BUCKET.search(value) or VALID_S3_ARN.search(value)):
        raise ValueError("must be a bucket name: letters, digits, '.', '-' and '_' (at most 255)")
    return value


def prefix(value) -> str:
    """The folder below the bucket every object key goes in, as `a/b/` (or ``)."""
    if not isinstance(value, str):
        raise ValueError("must be a string such as 'uploads'")
    if any(part in (".", "..") for part in value.strip("/").split("/")):
        raise ValueError("must not contain '.' or '..' segments")
    if "//" in value.strip("/") or "\\" in value:
        raise ValueError("must not contain '//' or '\\'")
    return normalize_prefix(value)


def one_of(*choices: str, meaning: str | None = None):
    """A parser accepting exactly one of `choices`; `meaning` explains them in the error."""

    def parse(value) -> str:
        if value not in choices:
            raise ValueError(meaning or f"must be one of {', '.join(choices)}")
        return value

    return parse


def addressing_style(value) -> str:
    """How the bucket goes in a URL: its own host name (virtual), the path, or
    auto (botocore's choice); blank leaves the choice to parse_source_config."""
    style = text(value)
    return one_of("auto", "path", "virtual")(style) if style else style


def size_at_most(most: int, limit: str):
    """A parser for a size in bytes (see parse_size) of at most `most`, which is `limit`."""

    def parse(value) -> int:
        number = size(value)
        if number > most:
            raise ValueError(f"must not exceed {limit}")
        return number

    return parse


def seconds(value) -> int:
    """A lifetime for presigned URLs: whole seconds, up to S3's presign limit."""
    try:
        if isinstance(value, bool):  # int(True) is 1: a YAML `yes` is no lifetime
            raise TypeError
        value = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: YAML's .inf
        raise ValueError("must be a whole number of seconds") from None
    if not 1 <= value <= SEVEN_DAYS:
        raise ValueError("must be between 1 second and 7 days (S3's presign limit)")
    return value


def count(value) -> int:
    """A per-actor limit: a whole number, at least 1."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a whole number, at least 1")
    return value


def flag(value) -> bool:
    """true or false (YAML's own, or the strings a -s option gives)."""
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        value = value.lower() in ("true", "1")
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def content_types(value) -> tuple[str, ...]:
    """A list (or comma-separated string) of MIME types and patterns like `image/*`."""
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValueError("must be a list such as ['image/*', 'application/pdf']")
    for pattern in value:
        if not _MIME_PATTERN_RE.match(pattern):
            raise ValueError(f"has {pattern!r}, which is not like 'image/*' or 'text/csv'")
    return tuple(t.lower() for t in value)


# Every option and its parser. A text option left empty ("") counts as unset.
OPTION_PARSERS = {
    "bucket": bucket,
    "region": region,
    "prefix": prefix,
    "endpoint_url": endpoint_url,
    "public_endpoint_url": endpoint_url,
    "addressing_style": addressing_style,
    "access_key_id": text,
    "secret_access_key": text,
    "session_token": text,
    "credentials_url": http_url,
    "credentials_url_secret": text,
    "max_file_size": size_at_most(S3_MAX_OBJECT_SIZE, "S3's 5 TiB object limit"),
    "allowed_content_types": content_types,
    "upload_expires": seconds,
    "download_expires": seconds,
    "multipart_threshold": size_at_most(S3_MAX_SINGLE_UPLOAD, "S3's 5 GiB single-upload limit"),
    "multipart_expires": seconds,
    "thumbnail_max_size": size,
    "max_read_size": size,
    "direct_uploads": flag,
    "checksum": one_of(
        "sha256", "none", meaning="must be sha256 (the store checks each upload's SHA-256) or none"
    ),
    "upload_method": one_of(
        "auto",
        "post",
        "put",
        meaning="must be auto (POST, then PUT once the store refuses POST), post or put",
    ),
    "max_pending_uploads": count,
    "max_open_multipart_uploads": count,
}
OPTIONS = set(OPTION_PARSERS)
TEXT_PARSERS = (text, http_url, endpoint_url, region, bucket, prefix, addressing_style)


def parse_source_config(source: str, raw) -> S3SourceConfig:
    """Validate one source's `config:` block, or raise a one-line ConfigError."""

    def fail(option: str, problem: str):
        raise ConfigError(f"datasette-files source '{source}' (storage: s3): option '{option}' {problem}")

    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        fail("config", "must be a mapping of options")
    # By text: YAML keys may be numbers, which do not sort with strings.
    unknown = sorted(map(str, set(raw) - OPTIONS))
    if unknown:
        fail(unknown[0], f"is not a known option (known: {', '.join(sorted(OPTIONS))})")

    values: dict = {}
    for name, parse in OPTION_PARSERS.items():
        value = raw.get(name)
        if value is None or (value == "" and parse in TEXT_PARSERS):
            continue
        try:
            values[name] = parse(value)
        except ValueError as ex:
            fail(name, str(ex))

    problem = credentials_problem(values)
    if problem:
        fail(*problem)
    if not values.get("addressing_style"):
        # A custom endpoint (MinIO, LocalStack, Ceph) rarely has DNS for bucket subdomains.
        values["addressing_style"] = "path" if values.get("endpoint_url") else "auto"
    if "multipart_threshold" not in values and values.get("checksum", "sha256") == "sha256":
        values["multipart_threshold"] = HASHED_MULTIPART_THRESHOLD
    return S3SourceConfig(source=source, **values)


def credentials_problem(values: dict) -> tuple[str, str] | None:
    """(option, problem) for where the bucket and its credentials come from, if
    the options that must go together do not."""
    if not values.get("bucket") and not values.get("credentials_url"):
        return "bucket", "is required (or set credentials_url to use a credentials broker)"
    if values.get("credentials_url") and not values.get("credentials_url_secret"):
        return "credentials_url_secret", "is required when credentials_url is set"
    if bool(values.get("access_key_id")) != bool(values.get("secret_access_key")):
        missing = "secret_access_key" if values.get("access_key_id") else "access_key_id"
        return missing, "must be set together with the other static key"
    if values.get("session_token") and not values.get("access_key_id"):
        return "session_token", "needs access_key_id and secret_access_key as well"
    return None


def content_type_allowed(content_type: str, patterns: tuple[str, ...]) -> bool:
    """True when no patterns are set or one of them (`image/*`, `text/csv`) matches."""
    if not patterns:
        return True
    content_type = content_type.lower()
    major = content_type.split("/", 1)[0]
    return any(p in ("*/*", content_type, f"{major}/*") for p in patterns)
