"""What an S3 request asks for, and whether an IAM policy allows it.

The scoped proxy in front of the test store (tests/tenant_proxy.py) decides
with this module, because moto enforces neither session policies, nor
`s3:prefix` conditions, nor anything at all on presigned requests
(docs/tenants.md, "What the test stores enforce").

It is a deliberately small model of IAM, kept honest in two ways:
- requests map to the IAM actions AWS documents for them (HEAD is GetObject,
  CompleteMultipartUpload is PutObject, a copy also needs GetObject on the
  source), and `s3:prefix` exists only for ListBucket and ListBucketVersions,
  as in AWS's action table: a ListBucketMultipartUploads grant cannot be
  limited to a prefix;
- a policy using anything the model does not evaluate (NotAction, Principal,
  another condition operator or key) is refused when loaded, never ignored.

Everything here is pure: values in, values out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

SUPPORTED_OPERATORS = ("StringEquals", "StringLike")
SUPPORTED_CONDITION_KEYS = ("s3:prefix",)


class UnsupportedPolicy(ValueError):
    """The policy uses IAM features this model does not evaluate."""


@dataclass(frozen=True)
class S3Access:
    """One IAM check: an action on a resource, with the condition keys the request carries."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class S3Request:
    """What one HTTP request to the store is, and the IAM checks it needs.

    `keys` holds every object key the request touches (a copy's source too);
    `prefix` is a listing's prefix (None when the request sends none).
    An empty `accesses` means S3 checks no rights (a CORS preflight).
    """

    operation: str
    bucket: str | None = None
    keys: tuple[str, ...] = ()
    prefix: str | None = None
    accesses: tuple[S3Access, ...] = ()


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def split_path(raw_path: str) -> tuple[str | None, str | None]:
    """A path-style request path (`/bucket/some/key`, still URL-encoded) to (bucket, key)."""
    path = raw_path.split("?", 1)[0]
    if not path.startswith("/"):
        path = "/" + path
    bucket, _, key = path[1:].partition("/")
    return (unquote(bucket) or None), (unquote(key) or None)


def parse_copy_source(value: str) -> tuple[str, str]:
    """`x-amz-copy-source` (`bucket/key` or `/bucket/key`, URL-encoded, maybe `?versionId=`)."""
    source = unquote(value.split("?", 1)[0]).lstrip("/")
    bucket, _, key = source.partition("/")
    return bucket, key


# Bucket subresources: query parameter -> (S3 operation, IAM action), per method.
# DELETE of cors/lifecycle needs the Put action: that is how AWS names them.
BUCKET_SUBRESOURCES = {
    "GET": {
        "cors": ("GetBucketCors", "s3:GetBucketCORS"),
        "lifecycle": ("GetBucketLifecycleConfiguration", "s3:GetLifecycleConfiguration"),
        "location": ("GetBucketLocation", "s3:GetBucketLocation"),
        "policy": ("GetBucketPolicy", "s3:GetBucketPolicy"),
        "versioning": ("GetBucketVersioning", "s3:GetBucketVersioning"),
        "acl": ("GetBucketAcl", "s3:GetBucketAcl"),
        "tagging": ("GetBucketTagging", "s3:GetBucketTagging"),
        "encryption": ("GetBucketEncryption", "s3:GetEncryptionConfiguration"),
        "website": ("GetBucketWebsite", "s3:GetBucketWebsite"),
    },
    "PUT": {
        "cors": ("PutBucketCors", "s3:PutBucketCORS"),
        "lifecycle": ("PutBucketLifecycleConfiguration", "s3:PutLifecycleConfiguration"),
        "policy": ("PutBucketPolicy", "s3:PutBucketPolicy"),
        "versioning": ("PutBucketVersioning", "s3:PutBucketVersioning"),
        "acl": ("PutBucketAcl", "s3:PutBucketAcl"),
        "tagging": ("PutBucketTagging", "s3:PutBucketTagging"),
        "encryption": ("PutBucketEncryption", "s3:PutEncryptionConfiguration"),
        "website": ("PutBucketWebsite", "s3:PutBucketWebsite"),
    },
    "DELETE": {
        "cors": ("DeleteBucketCors", "s3:PutBucketCORS"),
        "lifecycle": ("DeleteBucketLifecycle", "s3:PutLifecycleConfiguration"),
        "policy": ("DeleteBucketPolicy", "s3:DeleteBucketPolicy"),
        "tagging": ("DeleteBucketTagging", "s3:PutBucketTagging"),
        "encryption": ("DeleteBucketEncryption", "s3:PutEncryptionConfiguration"),
        "website": ("DeleteBucketWebsite", "s3:DeleteBucketWebsite"),
    },
}


def _bucket_level(method: str, query: Mapping[str, list[str]]) -> tuple[str, str] | None:
    """(operation, action) for a bucket subresource call, or None if the query names none."""
    table = BUCKET_SUBRESOURCES.get(method, {})
    for name, entry in table.items():
        if name in query:
            return entry
    # Anything else bucket-level we do not list is still bucket-level: never an object right.
    unknown = sorted(
        name for name in query if name not in LIST_PARAMETERS and not _is_signing_parameter(name)
    )
    if method in ("PUT", "DELETE", "GET") and unknown:
        name = unknown[0]
        return f"{method} ?{name}", f"s3:{method.title()}Bucket{name[:1].upper()}{name[1:]}"
    return None


def _is_signing_parameter(name: str) -> bool:
    """Presigned-URL query parameters (SigV4 `X-Amz-*`, SigV2): credentials, not a subresource."""
    return name.lower().startswith("x-amz-") or name in ("AWSAccessKeyId", "Signature", "Expires")


# Query parameters of the listing calls: they do not make a call bucket-level.
LIST_PARAMETERS = {
    "list-type",
    "prefix",
    "delimiter",
    "encoding-type",
    "max-keys",
    "continuation-token",
    "start-after",
    "fetch-owner",
    "marker",
    "key-marker",
    "upload-id-marker",
    "max-uploads",
    "version-id-marker",
    "uploads",
    "versions",
    "x-id",
}


def classify(
    method: str,
    raw_path: str,
    query: Mapping[str, list[str]],
    headers: Mapping[str, str] | None = None,
    form_key: str | None = None,
    delete_keys: tuple[str, ...] = (),
) -> S3Request:
    """The operation a path-style S3 request performs and the rights it needs.

    `query` is `parse_qs(..., keep_blank_values=True)`; `headers` is matched
    case-insensitively; `form_key` is the `key` field of a browser POST
    upload and `delete_keys` the keys in a DeleteObjects body.
    """
    method = method.upper()
    headers = {name.lower(): value for name, value in (headers or {}).items()}
    bucket, key = split_path(raw_path)
    if method == "OPTIONS":
        # CORS preflight: S3 answers it from the bucket's CORS rules, without credentials.
        return S3Request("PreflightCors", bucket, (key,) if key else ())
    if bucket is None:
        return S3Request("ListBuckets", accesses=(S3Access("s3:ListAllMyBuckets", "*"),))
    if key is None:
        return _classify_bucket(method, bucket, query, form_key, delete_keys)
    return _classify_object(method, bucket, key, query, headers)


def _classify_bucket(method, bucket, query, form_key, delete_keys) -> S3Request:
    arn = bucket_arn(bucket)
    prefix = query.get("prefix", [None])[0]
    if method == "POST" and "delete" in query:
        return S3Request(
            "DeleteObjects",
            bucket,
            tuple(delete_keys),
            accesses=tuple(S3Access("s3:DeleteObject", object_arn(bucket, k)) for k in delete_keys),
        )
    if method == "POST":
        keys = (form_key,) if form_key is not None else ()
        # A POST without a key field cannot name an object: check the bucket, which no object grant covers.
        resource = object_arn(bucket, form_key) if form_key is not None else arn
        return S3Request("PostObject", bucket, keys, accesses=(S3Access("s3:PutObject", resource),))
    if method == "HEAD":
        # HeadBucket needs s3:ListBucket, with no s3:prefix in the request.
        return S3Request("HeadBucket", bucket, accesses=(S3Access("s3:ListBucket", arn),))
    subresource = _bucket_level(method, query)
    if subresource is not None:
        operation, action = subresource
        return S3Request(operation, bucket, accesses=(S3Access(action, arn),))
    if method == "GET":
        context = {"s3:prefix": prefix} if prefix is not None else {}
        if "uploads" in query:
            # s3:prefix is not a condition key of ListBucketMultipartUploads (AWS's action table).
            return S3Request(
                "ListMultipartUploads",
                bucket,
                prefix=prefix,
                accesses=(S3Access("s3:ListBucketMultipartUploads", arn),),
            )
        if "versions" in query:
            return S3Request(
                "ListObjectVersions",
                bucket,
                prefix=prefix,
                accesses=(S3Access("s3:ListBucketVersions", arn, context),),
            )
        operation = "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
        return S3Request(
            operation, bucket, prefix=prefix, accesses=(S3Access("s3:ListBucket", arn, context),)
        )
    if method == "PUT":
        return S3Request("CreateBucket", bucket, accesses=(S3Access("s3:CreateBucket", arn),))
    if method == "DELETE":
        return S3Request("DeleteBucket", bucket, accesses=(S3Access("s3:DeleteBucket", arn),))
    return S3Request(f"{method} bucket", bucket, accesses=(S3Access(f"s3:Unknown{method.title()}", arn),))


OBJECT_SUBRESOURCES = {
    ("GET", "acl"): ("GetObjectAcl", "s3:GetObjectAcl"),
    ("GET", "tagging"): ("GetObjectTagging", "s3:GetObjectTagging"),
    ("PUT", "acl"): ("PutObjectAcl", "s3:PutObjectAcl"),
    ("PUT", "tagging"): ("PutObjectTagging", "s3:PutObjectTagging"),
    ("DELETE", "tagging"): ("DeleteObjectTagging", "s3:DeleteObjectTagging"),
}


def _classify_object(method, bucket, key, query, headers) -> S3Request:
    arn = object_arn(bucket, key)
    for (sub_method, name), (operation, action) in OBJECT_SUBRESOURCES.items():
        if method == sub_method and name in query:
            return S3Request(operation, bucket, (key,), accesses=(S3Access(action, arn),))
    if method in ("GET", "HEAD"):
        if method == "GET" and "uploadId" in query:
            return S3Request(
                "ListParts", bucket, (key,), accesses=(S3Access("s3:ListMultipartUploadParts", arn),)
            )
        operation = "GetObject" if method == "GET" else "HeadObject"
        return S3Request(operation, bucket, (key,), accesses=(S3Access("s3:GetObject", arn),))
    if method == "PUT":
        is_part = "partNumber" in query and "uploadId" in query
        accesses = [S3Access("s3:PutObject", arn)]
        keys = [key]
        if "x-amz-copy-source" in headers:
            source_bucket, source_key = parse_copy_source(headers["x-amz-copy-source"])
            accesses.append(S3Access("s3:GetObject", object_arn(source_bucket, source_key)))
            if source_bucket == bucket:
                keys.append(source_key)
            operation = "UploadPartCopy" if is_part else "CopyObject"
        else:
            operation = "UploadPart" if is_part else "PutObject"
        return S3Request(operation, bucket, tuple(keys), accesses=tuple(accesses))
    if method == "POST":
        if "uploads" in query:
            operation = "CreateMultipartUpload"
        elif "uploadId" in query:
            operation = "CompleteMultipartUpload"
        else:
            operation = "PostObject"
        return S3Request(operation, bucket, (key,), accesses=(S3Access("s3:PutObject", arn),))
    if method == "DELETE":
        if "uploadId" in query:
            return S3Request(
                "AbortMultipartUpload", bucket, (key,), accesses=(S3Access("s3:AbortMultipartUpload", arn),)
            )
        if "versionId" in query:
            return S3Request(
                "DeleteObjectVersion", bucket, (key,), accesses=(S3Access("s3:DeleteObjectVersion", arn),)
            )
        return S3Request("DeleteObject", bucket, (key,), accesses=(S3Access("s3:DeleteObject", arn),))
    return S3Request(
        f"{method} object", bucket, (key,), accesses=(S3Access(f"s3:Unknown{method.title()}", arn),)
    )


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM wildcard match: `*` any run of characters, `?` one character, nothing else special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


@dataclass(frozen=True)
class _Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]  # (operator, key, values)

    def matches(self, access: S3Access) -> bool:
        if not any(_wildcard(p, access.action, ignore_case=True) for p in self.actions):
            return False
        if not any(_wildcard(p, access.resource) for p in self.resources):
            return False
        for operator, key, values in self.conditions:
            # A key the request does not carry fails the condition, as in IAM.
            if key not in access.context:
                return False
            actual = access.context[key]
            if operator == "StringEquals" and actual not in values:
                return False
            if operator == "StringLike" and not any(_wildcard(v, actual) for v in values):
                return False
        return True


class Policy:
    """An IAM policy document this model can evaluate exactly, or UnsupportedPolicy."""

    def __init__(self, document: dict | str):
        if isinstance(document, str):
            document = json.loads(document)
        self.document = document
        statements = document.get("Statement")
        if not isinstance(statements, list | dict):
            raise UnsupportedPolicy("the policy has no Statement")
        self.statements = tuple(self._statement(s) for s in _as_list(statements))

    @staticmethod
    def _statement(raw: dict) -> _Statement:
        unknown = set(raw) - {"Sid", "Effect", "Action", "Resource", "Condition"}
        if unknown:
            raise UnsupportedPolicy(f"statement element(s) not modelled: {sorted(unknown)}")
        if raw.get("Effect") not in ("Allow", "Deny"):
            raise UnsupportedPolicy("Effect must be Allow or Deny")
        if "Action" not in raw or "Resource" not in raw:
            raise UnsupportedPolicy("each statement needs Action and Resource")
        conditions = []
        for operator, pairs in (raw.get("Condition") or {}).items():
            if operator not in SUPPORTED_OPERATORS:
                raise UnsupportedPolicy(f"condition operator {operator} is not modelled")
            for key, values in pairs.items():
                if key not in SUPPORTED_CONDITION_KEYS:
                    raise UnsupportedPolicy(f"condition key {key} is not modelled")
                conditions.append((operator, key, tuple(_as_list(values))))
        return _Statement(
            raw["Effect"], tuple(_as_list(raw["Action"])), tuple(_as_list(raw["Resource"])), tuple(conditions)
        )

    def allows(self, access: S3Access) -> bool:
        """IAM's rule: an explicit Deny wins, then any Allow, else denied."""
        matching = [s.effect for s in self.statements if s.matches(access)]
        return "Deny" not in matching and "Allow" in matching

    def allows_all(self, request: S3Request) -> bool:
        """Every check the request needs is allowed."""
        return all(self.allows(access) for access in request.accesses)
