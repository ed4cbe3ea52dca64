"""The tenant rig itself: the scoped proxy answers as S3 would, logs what it saw,
and the tenant broker's credentials work.

The proxy is there because moto cannot produce these denials: with IAM on it
ignores session policies and s3:prefix conditions and answers presigned
requests with 500 (tests/test_store_enforcement.py measures that). So an
AccessDenied in these tests is the proxy's, in S3's exact shape.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import httpx
import pytest
from botocore.exceptions import ClientError

from datasette_files_s3.config import parse_source_config
from datasette_files_s3.credentials import BrokerCredentialsProvider
from tests.tenancy import (
    TenantBroker,
    aws_client,
    brokered_source,
    outcome,
    round_trip,
    set_up_tenant_role,
    tenant_policy,
)
from tests.tenant_proxy import LoggedRequest

# moto itself: its IAM and STS, which LocalStack's S3-only run does not have.
pytestmark = pytest.mark.store("moto", reason="uses moto's IAM and STS")


SECRET = "tenant-one-broker-secret"


@pytest.fixture
def broker(s3_server, proxy, shared_bucket):
    role_arn, caller = set_up_tenant_role(s3_server.endpoint_url, shared_bucket)
    server = TenantBroker(SECRET, shared_bucket, "team-1/", proxy, role_arn, caller).start()
    yield server
    server.stop()


def credentials(broker: TenantBroker) -> dict:
    answer = httpx.post(broker.url, data={"secret": SECRET})
    assert answer.status_code == 200, answer.text
    return answer.json()


def s3_client(proxy, creds: dict, token: str | None = "issued", **config):
    """A client through the proxy with issued credentials (and their token unless told otherwise)."""
    if token == "issued":
        token = creds["SessionToken"]
    return aws_client("s3", proxy.url, creds["AccessKeyId"], creds["SecretAccessKey"], token, **config)


@pytest.fixture
def tenant_s3(proxy, broker):
    return s3_client(proxy, credentials(broker))


@pytest.fixture
def presigner(proxy, broker):
    return s3_client(proxy, credentials(broker), signature_version="s3v4")


def test_denies_a_key_outside_the_prefix_with_s3s_exact_error(tenant_s3, shared_bucket):
    with pytest.raises(ClientError) as info:
        tenant_s3.get_object(Bucket=shared_bucket, Key="team-2/theirs.txt")
    error = info.value.response
    assert error["Error"] == {"Code": "AccessDenied", "Message": "Access Denied"}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["ResponseMetadata"]["RequestId"]


def test_denial_body_is_s3s_xml_error_document(presigner, shared_bucket):
    url = presigner.generate_presigned_url(
        "get_object", Params={"Bucket": shared_bucket, "Key": "team-2/theirs.txt"}
    )
    response = httpx.get(url)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/xml"
    document = ET.fromstring(response.content)
    assert document.tag == "Error"
    assert document.findtext("Code") == "AccessDenied"
    assert document.findtext("Message") == "Access Denied"
    assert document.findtext("RequestId") == response.headers["x-amz-request-id"]
    assert document.findtext("HostId")


@pytest.mark.parametrize(
    "call",
    [
        lambda s3, b: s3.head_object(Bucket=b, Key="team-2/theirs.txt"),
        lambda s3, b: s3.put_object(Bucket=b, Key="team-2/mine-now.txt", Body=b"x" * 200_000),
        lambda s3, b: s3.delete_object(Bucket=b, Key="team-2/theirs.txt"),
        lambda s3, b: s3.create_multipart_upload(Bucket=b, Key="team-2/big.bin"),
        lambda s3, b: s3.put_object(Bucket=b, Key="team-10/prefix-lookalike.txt", Body=b"x"),
        lambda s3, b: s3.copy_object(
            Bucket=b, Key="team-1/stolen.txt", CopySource={"Bucket": b, "Key": "team-2/theirs.txt"}
        ),
        lambda s3, b: s3.get_object(Bucket="some-other-bucket", Key="team-1/x"),
    ],
    ids=[
        "head",
        "put",
        "delete",
        "create-multipart",
        "prefix-lookalike",
        "copy-from-outside",
        "other-bucket",
    ],
)
def test_denies_object_calls_outside_the_prefix(tenant_s3, shared_bucket, s3_server, call):
    assert outcome(lambda: call(tenant_s3, shared_bucket)) in ("AccessDenied", "403")
    assert sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=shared_bucket)["Contents"]) == [
        "team-2/theirs.txt"
    ]


def test_allows_every_object_call_inside_the_prefix(tenant_s3, shared_bucket):
    key = "team-1/inside.txt"
    tenant_s3.put_object(Bucket=shared_bucket, Key=key, Body=b"inside")
    assert tenant_s3.head_object(Bucket=shared_bucket, Key=key)["ContentLength"] == 6
    assert tenant_s3.get_object(Bucket=shared_bucket, Key=key, Range="bytes=0-1")["Body"].read() == b"in"
    upload_id = tenant_s3.create_multipart_upload(Bucket=shared_bucket, Key="team-1/big.bin")["UploadId"]
    part = tenant_s3.upload_part(
        Bucket=shared_bucket, Key="team-1/big.bin", UploadId=upload_id, PartNumber=1, Body=b"p"
    )
    assert (
        len(tenant_s3.list_parts(Bucket=shared_bucket, Key="team-1/big.bin", UploadId=upload_id)["Parts"])
        == 1
    )
    tenant_s3.complete_multipart_upload(
        Bucket=shared_bucket,
        Key="team-1/big.bin",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    aborted = tenant_s3.create_multipart_upload(Bucket=shared_bucket, Key="team-1/gone.bin")["UploadId"]
    tenant_s3.abort_multipart_upload(Bucket=shared_bucket, Key="team-1/gone.bin", UploadId=aborted)
    tenant_s3.delete_object(Bucket=shared_bucket, Key=key)


@pytest.mark.parametrize(
    "prefix,expected",
    [
        ("team-1/", "allowed"),
        ("team-1/deeper/", "allowed"),
        (None, "AccessDenied"),
        ("", "AccessDenied"),
        ("team-1", "AccessDenied"),
        ("team-2/", "AccessDenied"),
    ],
)
def test_listing_is_allowed_only_with_a_prefix_inside_the_tenants(tenant_s3, shared_bucket, prefix, expected):
    params = {"Bucket": shared_bucket} if prefix is None else {"Bucket": shared_bucket, "Prefix": prefix}
    assert outcome(lambda: tenant_s3.list_objects_v2(**params)) == expected
    assert outcome(lambda: tenant_s3.list_objects(**params)) == expected


def test_listing_multipart_uploads_is_denied_even_inside_the_prefix(tenant_s3, shared_bucket):
    # AWS has no s3:prefix condition for ListBucketMultipartUploads, so a tenant policy cannot grant it
    # for one prefix only; the shipped tenant policy does not grant it at all.
    assert (
        outcome(lambda: tenant_s3.list_multipart_uploads(Bucket=shared_bucket, Prefix="team-1/"))
        == "AccessDenied"
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda s3, b: s3.get_bucket_cors(Bucket=b),
        lambda s3, b: s3.put_bucket_cors(
            Bucket=b, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
        ),
        lambda s3, b: s3.get_bucket_lifecycle_configuration(Bucket=b),
        lambda s3, b: s3.get_bucket_location(Bucket=b),
        lambda s3, b: s3.list_buckets(),
    ],
    ids=[
        "GetBucketCors",
        "PutBucketCors",
        "GetBucketLifecycleConfiguration",
        "GetBucketLocation",
        "ListBuckets",
    ],
)
def test_denies_bucket_level_calls(tenant_s3, shared_bucket, call):
    assert outcome(lambda: call(tenant_s3, shared_bucket)) == "AccessDenied"


def test_head_bucket_is_denied_without_a_body_as_s3_answers_head(tenant_s3, shared_bucket):
    # HeadBucket needs s3:ListBucket with no s3:prefix in the request; boto3 reports a HEAD error by status.
    assert outcome(lambda: tenant_s3.head_bucket(Bucket=shared_bucket)) == "403"


def test_bucket_level_call_is_forwarded_once_the_grant_allows_it(proxy, broker, shared_bucket):
    creds = credentials(broker)
    policy = tenant_policy(shared_bucket, "team-1/")
    policy["Statement"].append(
        {"Effect": "Allow", "Action": "s3:GetBucketCORS", "Resource": f"arn:aws:s3:::{shared_bucket}"}
    )
    proxy.grant(creds["AccessKeyId"], policy, session_token=creds["SessionToken"])
    # moto answers: the shared_bucket has no CORS rules, which shows the call reached it.
    assert (
        outcome(lambda: s3_client(proxy, creds).get_bucket_cors(Bucket=shared_bucket))
        == "NoSuchCORSConfiguration"
    )


def test_presigned_get_inside_the_prefix_is_forwarded(tenant_s3, presigner, shared_bucket):
    tenant_s3.put_object(Bucket=shared_bucket, Key="team-1/read-me.txt", Body=b"read me")
    url = presigner.generate_presigned_url(
        "get_object", Params={"Bucket": shared_bucket, "Key": "team-1/read-me.txt"}
    )
    response = httpx.get(url)
    assert (response.status_code, response.content) == (200, b"read me")


def test_presigned_part_put_inside_the_prefix_is_forwarded_and_outside_denied(
    tenant_s3, presigner, shared_bucket, s3_server
):
    upload_id = tenant_s3.create_multipart_upload(Bucket=shared_bucket, Key="team-1/parts.bin")["UploadId"]
    params = {"Bucket": shared_bucket, "Key": "team-1/parts.bin", "UploadId": upload_id, "PartNumber": 1}
    response = httpx.put(
        presigner.generate_presigned_url("upload_part", Params=params), content=b"a" * 6_000_000
    )
    assert response.status_code == 200 and response.headers["etag"]
    their_upload = s3_server.client().create_multipart_upload(Bucket=shared_bucket, Key="team-2/parts.bin")[
        "UploadId"
    ]
    params = {"Bucket": shared_bucket, "Key": "team-2/parts.bin", "UploadId": their_upload, "PartNumber": 1}
    response = httpx.put(presigner.generate_presigned_url("upload_part", Params=params), content=b"b" * 1000)
    assert response.status_code == 403
    assert (
        s3_server.client()
        .list_parts(Bucket=shared_bucket, Key="team-2/parts.bin", UploadId=their_upload)
        .get("Parts")
        is None
    )


def test_presigned_post_inside_the_prefix_streams_without_holding_the_file(
    proxy, presigner, shared_bucket, s3_server
):
    post = presigner.generate_presigned_post(shared_bucket, "team-1/posted.bin")
    content = b"f" * (8 * 1024 * 1024)
    response = httpx.post(post["url"], data=post["fields"], files={"file": ("posted.bin", content)})
    assert response.status_code == 204, response.text
    assert s3_server.client().head_object(Bucket=shared_bucket, Key="team-1/posted.bin")[
        "ContentLength"
    ] == len(content)
    # Only the form fields before the file part were held: at most one 64 KiB read.
    assert proxy.largest_form_head <= 64 * 1024


@pytest.mark.parametrize("key", ["team-2/posted.bin", "${filename}"])
def test_presigned_post_outside_the_prefix_is_denied_by_its_form_key(
    proxy, presigner, shared_bucket, s3_server, key
):
    post = presigner.generate_presigned_post(shared_bucket, key)
    response = httpx.post(post["url"], data=post["fields"], files={"file": ("escape.bin", b"x" * 1000)})
    assert response.status_code == 403
    assert ET.fromstring(response.content).findtext("Code") == "AccessDenied"
    assert proxy.requests[-1].keys == (key.replace("${filename}", "escape.bin"),)
    assert "escape.bin" not in [
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=shared_bucket)["Contents"]
    ]


def test_session_credentials_need_their_token(proxy, broker, shared_bucket):
    creds = credentials(broker)
    without = s3_client(proxy, creds, token=None)
    assert outcome(lambda: without.get_object(Bucket=shared_bucket, Key="team-1/x")) == "InvalidAccessKeyId"
    wrong = s3_client(proxy, creds, token="not-the-token")
    assert outcome(lambda: wrong.get_object(Bucket=shared_bucket, Key="team-1/x")) == "InvalidToken"


def test_expired_credentials_answer_expired_token(proxy, broker, shared_bucket):
    creds = credentials(broker)
    proxy.grant(
        creds["AccessKeyId"],
        tenant_policy(shared_bucket, "team-1/"),
        session_token=creds["SessionToken"],
        expires_at=time.time() - 1,
    )
    assert (
        outcome(lambda: s3_client(proxy, creds).get_object(Bucket=shared_bucket, Key="team-1/x"))
        == "ExpiredToken"
    )


def test_unknown_access_key_is_refused(proxy, shared_bucket):
    stranger = aws_client("s3", proxy.url, "AKIASTRANGER", "secret")
    assert (
        outcome(lambda: stranger.list_objects_v2(Bucket=shared_bucket, Prefix="team-1/"))
        == "InvalidAccessKeyId"
    )


def test_logs_every_request_with_method_path_query_and_key(proxy, tenant_s3, shared_bucket):
    tenant_s3.put_object(Bucket=shared_bucket, Key="team-1/logged.txt", Body=b"x")
    tenant_s3.list_objects_v2(Bucket=shared_bucket, Prefix="team-1/")
    outcome(lambda: tenant_s3.get_object(Bucket=shared_bucket, Key="team-2/theirs.txt"))
    put, listing, denied = proxy.requests[-3:]
    assert (put.method, put.path, put.operation, put.keys, put.status, put.denied) == (
        "PUT",
        f"/{shared_bucket}/team-1/logged.txt",
        "PutObject",
        ("team-1/logged.txt",),
        200,
        None,
    )
    assert (listing.method, listing.operation, listing.prefix) == ("GET", "ListObjectsV2", "team-1/")
    assert "list-type=2" in listing.query and "prefix=team-1" in listing.query
    assert (denied.keys, denied.status, denied.denied) == (("team-2/theirs.txt",), 403, "AccessDenied")
    assert put.access_key_id == denied.access_key_id and put.access_key_id.startswith("ASIA")
    assert proxy.outside(shared_bucket, "team-1/") == [denied]


@pytest.mark.parametrize(
    "bucket, path, expected",
    [
        ("shared", "/shared", False),  # the preflight of a presigned POST to the bucket's URL
        ("shared", "/shared/team-1/part.bin", False),
        ("shared", "/shared/team-2/theirs.bin", True),
        ("elsewhere", "/elsewhere", True),
    ],
    ids=["post-to-bucket", "own-key", "other-key", "other-bucket"],
)
def test_cors_preflight_is_outside_only_for_another_key_or_bucket(bucket, path, expected):
    preflight = LoggedRequest(
        "OPTIONS", path, "", "PreflightCors", bucket, tuple(path.split("/", 2)[2:]), None, None, 200, None
    )
    assert preflight.outside("shared", "team-1/") is expected


async def test_broker_issues_sts_credentials_for_the_tenants_folder(proxy, broker, shared_bucket):
    provider = BrokerCredentialsProvider(
        parse_source_config("tenant", {"credentials_url": broker.url, "credentials_url_secret": SECRET})
    )
    issued = await provider.get()
    assert (issued.bucket, issued.prefix) == (shared_bucket, "team-1/")
    assert issued.access_key_id.startswith("ASIA") and issued.session_token
    assert [r.operation for r in proxy.requests] == ["sts:AssumeRole"]
    # The proxy learned the session policy from the AssumeRole call itself.
    assert proxy.grants[issued.access_key_id].policy.document == tenant_policy(shared_bucket, "team-1/")


def test_broker_lifetime_shorter_than_sts_minimum_is_enforced_by_the_proxy(proxy, broker, shared_bucket):
    broker.lifetime = 60
    creds = credentials(broker)
    expires_at = proxy.grants[creds["AccessKeyId"]].expires_at
    assert abs(expires_at - (time.time() + 60)) < 5


def test_broker_moved_to_another_folder_issues_keys_for_that_folder_only(proxy, broker, shared_bucket):
    before = s3_client(proxy, credentials(broker))
    broker.move_to("team-3/")
    after_creds = credentials(broker)
    assert after_creds["S3Folder"] == f"s3://{shared_bucket}/team-3/"
    after = s3_client(proxy, after_creds)
    assert (
        outcome(lambda: after.put_object(Bucket=shared_bucket, Key="team-3/new.txt", Body=b"x")) == "allowed"
    )
    assert (
        outcome(lambda: after.put_object(Bucket=shared_bucket, Key="team-1/old.txt", Body=b"x"))
        == "AccessDenied"
    )
    # Keys issued before the move keep their rights until they expire, as STS credentials do.
    assert (
        outcome(lambda: before.put_object(Bucket=shared_bucket, Key="team-1/old.txt", Body=b"x")) == "allowed"
    )


async def test_plugin_uploads_and_downloads_through_the_rig_inside_the_prefix(
    proxy, broker, shared_bucket, make_datasette
):
    source = brokered_source(broker.url, SECRET, proxy.url)
    ds = await make_datasette({"tenant": {"storage": "s3", "config": source}})
    await round_trip(ds, "tenant", b"tenant bytes", "t.txt")
    assert [r.operation for r in proxy.requests if r.denied] == []
    assert proxy.outside(shared_bucket, "team-1/") == []
    assert any(r.operation == "PostObject" and r.keys[0].startswith("team-1/") for r in proxy.requests)
