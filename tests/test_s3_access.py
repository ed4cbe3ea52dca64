"""The proxy's model of S3 requests and IAM policies (tests/s3_access.py), without a server."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from tests.s3_access import Policy, S3Access, UnsupportedPolicy, classify
from tests.tenancy import example_policy, tenant_policy

B = "arn:aws:s3:::shared"


def request(method: str, target: str, headers: dict | None = None, **extra):
    path, _, query = target.partition("?")
    return classify(method, path, parse_qs(query, keep_blank_values=True), headers, **extra)


@pytest.mark.parametrize(
    "method,target,operation,checks",
    [
        ("GET", "/shared/team-1/a.txt", "GetObject", [("s3:GetObject", f"{B}/team-1/a.txt")]),
        ("GET", "/shared/team-1/a.txt?x-id=GetObject", "GetObject", [("s3:GetObject", f"{B}/team-1/a.txt")]),
        ("HEAD", "/shared/team-1/a.txt", "HeadObject", [("s3:GetObject", f"{B}/team-1/a.txt")]),
        ("PUT", "/shared/team-1/a%20b.txt", "PutObject", [("s3:PutObject", f"{B}/team-1/a b.txt")]),
        (
            "PUT",
            "/shared/team-1/m?partNumber=2&uploadId=u",
            "UploadPart",
            [("s3:PutObject", f"{B}/team-1/m")],
        ),
        ("POST", "/shared/team-1/m?uploads", "CreateMultipartUpload", [("s3:PutObject", f"{B}/team-1/m")]),
        (
            "POST",
            "/shared/team-1/m?uploadId=u",
            "CompleteMultipartUpload",
            [("s3:PutObject", f"{B}/team-1/m")],
        ),
        (
            "GET",
            "/shared/team-1/m?uploadId=u",
            "ListParts",
            [("s3:ListMultipartUploadParts", f"{B}/team-1/m")],
        ),
        (
            "DELETE",
            "/shared/team-1/m?uploadId=u",
            "AbortMultipartUpload",
            [("s3:AbortMultipartUpload", f"{B}/team-1/m")],
        ),
        ("DELETE", "/shared/team-1/a.txt", "DeleteObject", [("s3:DeleteObject", f"{B}/team-1/a.txt")]),
        ("GET", "/shared?list-type=2&prefix=team-1%2F", "ListObjectsV2", [("s3:ListBucket", B)]),
        ("GET", "/shared?prefix=team-1/", "ListObjects", [("s3:ListBucket", B)]),
        (
            "GET",
            "/shared?uploads&prefix=team-1/",
            "ListMultipartUploads",
            [("s3:ListBucketMultipartUploads", B)],
        ),
        ("HEAD", "/shared", "HeadBucket", [("s3:ListBucket", B)]),
        ("GET", "/shared?cors", "GetBucketCors", [("s3:GetBucketCORS", B)]),
        ("PUT", "/shared?cors", "PutBucketCors", [("s3:PutBucketCORS", B)]),
        ("DELETE", "/shared?cors", "DeleteBucketCors", [("s3:PutBucketCORS", B)]),
        (
            "GET",
            "/shared?lifecycle",
            "GetBucketLifecycleConfiguration",
            [("s3:GetLifecycleConfiguration", B)],
        ),
        (
            "PUT",
            "/shared?lifecycle",
            "PutBucketLifecycleConfiguration",
            [("s3:PutLifecycleConfiguration", B)],
        ),
        ("GET", "/shared?object-lock", "GET ?object-lock", [("s3:GetBucketObject-lock", B)]),
        ("GET", "/", "ListBuckets", [("s3:ListAllMyBuckets", "*")]),
        ("OPTIONS", "/shared/team-2/x", "PreflightCors", []),
    ],
)
def test_classify_maps_requests_to_the_actions_aws_checks(method, target, operation, checks):
    classified = request(method, target)
    assert classified.operation == operation
    assert [(a.action, a.resource) for a in classified.accesses] == checks


def test_only_listing_objects_carries_s3_prefix():
    assert request("GET", "/shared?list-type=2&prefix=team-1/").accesses[0].context == {
        "s3:prefix": "team-1/"
    }
    assert request("GET", "/shared?list-type=2").accesses[0].context == {}
    # AWS's action table has no s3:prefix for ListBucketMultipartUploads.
    assert request("GET", "/shared?uploads&prefix=team-1/").accesses[0].context == {}


def test_presigned_url_parameters_do_not_make_a_listing_bucket_level():
    classified = request("GET", "/shared?list-type=2&prefix=team-1/&X-Amz-Credential=K%2Fx&X-Amz-Signature=s")
    assert classified.operation == "ListObjectsV2"


def test_copy_needs_get_object_on_its_source():
    classified = request(
        "PUT", "/shared/team-1/copy", {"X-Amz-Copy-Source": "/shared/team-2/secret%20file.txt"}
    )
    assert classified.operation == "CopyObject"
    assert classified.keys == ("team-1/copy", "team-2/secret file.txt")
    assert [a.action for a in classified.accesses] == ["s3:PutObject", "s3:GetObject"]
    assert classified.accesses[1].resource == f"{B}/team-2/secret file.txt"


def test_browser_post_and_multi_delete_name_their_keys_from_the_body():
    post = request("POST", "/shared", form_key="team-1/up.bin")
    assert (post.operation, post.keys, post.accesses[0].resource) == (
        "PostObject",
        ("team-1/up.bin",),
        f"{B}/team-1/up.bin",
    )
    deleted = request("POST", "/shared?delete", delete_keys=("team-1/a", "team-2/b"))
    assert [a.resource for a in deleted.accesses] == [f"{B}/team-1/a", f"{B}/team-2/b"]


def test_keys_are_taken_literally_as_s3_stores_them():
    # moto (like S3) stores `team-1/../team-2/x` as that literal key, so the prefix check on it is right.
    assert request("GET", "/shared/team-1/../team-2/x").keys == ("team-1/../team-2/x",)


@pytest.fixture
def tenant():
    return Policy(tenant_policy("shared", "team-1/"))


@pytest.mark.parametrize(
    "resource,allowed",
    [
        (f"{B}/team-1/a.txt", True),
        (f"{B}/team-1/", True),
        (f"{B}/team-1/deep/er/a.txt", True),
        (f"{B}/team-10/a.txt", False),
        (f"{B}/team-2/a.txt", False),
        ("arn:aws:s3:::other/team-1/a.txt", False),
    ],
)
def test_object_statement_matches_only_the_tenant_prefix(tenant, resource, allowed):
    assert tenant.allows(S3Access("s3:GetObject", resource)) is allowed


def test_actions_match_case_insensitively_as_in_iam(tenant):
    assert tenant.allows(S3Access("S3:GETOBJECT", f"{B}/team-1/a"))


@pytest.mark.parametrize(
    "context,allowed",
    [
        ({"s3:prefix": "team-1/"}, True),
        ({"s3:prefix": "team-1/x/"}, True),
        ({"s3:prefix": "team-1"}, False),
        ({}, False),
    ],
)
def test_s3_prefix_condition_fails_when_absent_or_outside(tenant, context, allowed):
    assert tenant.allows(S3Access("s3:ListBucket", B, context)) is allowed


def test_explicit_deny_wins_over_allow():
    policy = Policy(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": f"{B}/team-1/keep*"},
            ],
        }
    )
    assert policy.allows(S3Access("s3:DeleteObject", f"{B}/team-1/other"))
    assert not policy.allows(S3Access("s3:DeleteObject", f"{B}/team-1/keep.txt"))


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "NotAction": "s3:DeleteObject", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "NotResource": "*"},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"StringNotLike": {"s3:prefix": "x"}},
        },
        {
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}},
        },
        {
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"StringLike": {"s3:delimiter": "/"}},
        },
        {"Effect": "Maybe", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*"},
    ],
)
def test_policies_using_what_the_model_does_not_evaluate_are_refused(statement):
    with pytest.raises(UnsupportedPolicy):
        Policy({"Version": "2012-10-17", "Statement": [statement]})


PLUGIN_REQUESTS_INSIDE = [
    ("PUT", "/shared/team-1/f.txt"),
    ("HEAD", "/shared/team-1/f.txt"),
    ("GET", "/shared/team-1/f.txt"),
    ("DELETE", "/shared/team-1/f.txt"),
    ("GET", "/shared?list-type=2&prefix=team-1/"),
    ("POST", "/shared/team-1/m?uploads"),
    ("PUT", "/shared/team-1/m?partNumber=1&uploadId=u"),
    ("GET", "/shared/team-1/m?uploadId=u"),
    ("POST", "/shared/team-1/m?uploadId=u"),
    ("DELETE", "/shared/team-1/m?uploadId=u"),
]


@pytest.mark.parametrize("method,target", PLUGIN_REQUESTS_INSIDE)
def test_shipped_tenant_policy_allows_the_plugins_calls_inside_the_prefix(tenant, method, target):
    assert tenant.allows_all(request(method, target))


def test_shipped_tenant_policy_allows_the_browser_post_inside_the_prefix(tenant):
    assert tenant.allows_all(request("POST", "/shared", form_key="team-1/up.bin"))
    assert not tenant.allows_all(request("POST", "/shared", form_key="team-2/up.bin"))


@pytest.mark.parametrize(
    "method,target",
    [
        ("GET", "/shared?uploads&prefix=team-1/"),
        ("HEAD", "/shared"),
        ("GET", "/shared?cors"),
        ("PUT", "/shared?lifecycle"),
    ],
)
def test_shipped_tenant_policy_denies_bucket_wide_calls(tenant, method, target):
    assert not tenant.allows_all(request(method, target))


@pytest.mark.parametrize("method,target", [*PLUGIN_REQUESTS_INSIDE, ("HEAD", "/shared"), ("GET", "/shared?uploads"), ("GET", "/shared?cors"), ("PUT", "/shared?cors"), ("GET", "/shared?lifecycle"), ("PUT", "/shared?lifecycle")])  # fmt: skip
def test_shipped_single_tenant_policy_allows_every_call_of_the_plugin_and_its_commands(method, target):
    policy = Policy(example_policy("single-tenant-policy.json", "shared", "team-1/"))
    assert policy.allows_all(request(method, target))
