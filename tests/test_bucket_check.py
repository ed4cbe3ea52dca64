"""A missing or refused bucket is named at prepare and at multipart create,
not left to fail in the browser; a successful check is remembered, a failed
one never is. Every S3 request counted here went over HTTP to the run's S3 server."""

import asyncio
import uuid

import pytest

from datasette_files_s3 import database, files_bridge
from datasette_files_s3.bucket_check import VERIFIED_SECONDS
from tests.helpers import actor_cookies
from tests.s3_servers import MotoServer

MISSING = "no-such-bucket-xyz"


def missing_message(name: str) -> str:
    return (
        f"datasette-files source 's3files': bucket '{name}' does not exist "
        "(check the source's bucket setting, or create the bucket)"
    )


PREPARE = "/-/files/upload/s3files/-/prepare"
CREATE = "/-/files-s3/upload/s3files/-/multipart/create"
BODY = {"filename": "a.txt", "content_type": "text/plain", "size": 3}


async def post(ds, path):
    return await ds.client.post(path, json=BODY, cookies=actor_cookies(ds))


async def pending_count(ds) -> int:
    return len(await database.pending_uploads(ds))


def assert_unusable_bucket(response, message):
    assert response.status_code == 502, response.text
    body = response.json()
    assert body["ok"] is False
    assert body["errors"] == [message]
    assert body["retryable"] is False


@pytest.fixture
def counted(s3_proxy):
    """The logging proxy in front of the test's S3 server; these tests count what reaches S3."""
    if s3_proxy is None:
        pytest.skip("counts requests to a local S3 server")
    return s3_proxy


def bucket_checks(proxy) -> list[str]:
    """The ListObjectsV2 requests (the bucket check) that reached S3."""
    return [path for method, path in proxy.requests if method == "GET" and "list-type=2" in path]


@pytest.mark.parametrize(
    "path, direct_uploads",
    [(PREPARE, True), (CREATE, True), (PREPARE, False)],
    ids=["prepare", "multipart-create", "proxy-mode-prepare"],
)
async def test_missing_bucket_is_named_and_nothing_is_started(make_datasette, bucket, path, direct_uploads):
    # Bucket names are global on real S3: there, one nobody can have made.
    missing = f"no-such-bucket-{uuid.uuid4().hex}" if not bucket.server.can_create_buckets else MISSING
    config = bucket.source_config(bucket=missing, direct_uploads=direct_uploads)
    ds = await make_datasette({"s3files": {"storage": "s3", "config": config}})
    assert_unusable_bucket(await post(ds, path), missing_message(missing))
    assert await pending_count(ds) == 0


async def test_proxy_mode_prepare_tells_nothing_about_the_bucket_to_anonymous(make_datasette, bucket):
    config = bucket.source_config(bucket=MISSING, direct_uploads=False)
    ds = await make_datasette({"s3files": {"storage": "s3", "config": config}})
    response = await ds.client.post(PREPARE, json=BODY)
    assert response.status_code == 403
    assert MISSING not in response.text


async def test_a_successful_check_is_remembered(make_datasette, bucket, counted):
    config = bucket.source_config(endpoint_url=counted.url)
    ds = await make_datasette({"s3files": {"storage": "s3", "config": config}})
    for _ in range(3):
        assert (await post(ds, PREPARE)).status_code == 200
    (check,) = bucket_checks(counted)
    # One key under the source's prefix: allowed to keys scoped to that prefix.
    assert f"prefix={bucket.prefix.replace('/', '%2F')}" in check and "max-keys=1" in check
    assert [method for method, _ in counted.requests] == ["GET"]


async def test_requests_arriving_together_share_one_check(make_datasette, bucket, counted):
    ds = await make_datasette(
        {"s3files": {"storage": "s3", "config": bucket.source_config(endpoint_url=counted.url)}}
    )
    responses = await asyncio.gather(*(post(ds, PREPARE) for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    assert len(bucket_checks(counted)) == 1


async def test_a_check_is_made_again_once_it_is_old(make_datasette, bucket, counted):
    ds = await make_datasette(
        {"s3files": {"storage": "s3", "config": bucket.source_config(endpoint_url=counted.url)}}
    )
    now = [1000.0]
    files_bridge.storage_for("s3files").bucket_check.clock = lambda: now[0]
    await post(ds, PREPARE)
    now[0] += VERIFIED_SECONDS - 1
    await post(ds, PREPARE)
    assert len(bucket_checks(counted)) == 1
    now[0] += 2
    assert (await post(ds, PREPARE)).status_code == 200
    assert len(bucket_checks(counted)) == 2


async def test_a_failed_check_is_not_remembered(make_datasette, bucket, counted):
    config = bucket.source_config(bucket="created-after-the-error", endpoint_url=counted.url)
    ds = await make_datasette({"s3files": {"storage": "s3", "config": config}})
    assert (await post(ds, PREPARE)).status_code == 502
    bucket.client.create_bucket(Bucket="created-after-the-error")
    assert (await post(ds, PREPARE)).status_code == 200
    assert len(bucket_checks(counted)) == 2


async def test_a_bucket_that_disappears_is_checked_again_after_s3_says_so(make_datasette, bucket, counted):
    config = bucket.source_config(bucket="soon-gone", endpoint_url=counted.url)
    bucket.client.create_bucket(Bucket="soon-gone")
    ds = await make_datasette({"s3files": {"storage": "s3", "config": config}})
    assert (await post(ds, PREPARE)).status_code == 200
    bucket.client.delete_bucket(Bucket="soon-gone")
    message = missing_message("soon-gone")
    # Create reaches S3 itself and hears NoSuchBucket: the remembered check is dropped...
    assert_unusable_bucket(await post(ds, CREATE), message)
    # ...so prepare asks S3 again instead of signing for a bucket that is gone.
    assert_unusable_bucket(await post(ds, PREPARE), message)
    assert len(bucket_checks(counted)) == 2


USES_MOTO_IAM = pytest.mark.store("moto", reason="uses moto's IAM")


@pytest.fixture(scope="module")
def iam_moto():
    """moto checking keys and IAM policies, with a bucket `guarded` holding `uploads/`."""
    server = MotoServer(enforce_iam=True).start()
    server.client().create_bucket(Bucket="guarded")
    yield server
    server.stop()


def keys_config(server, keys: dict) -> dict:
    return server.source_config(
        "guarded",
        prefix="uploads",
        access_key_id=keys["aws_access_key_id"],
        secret_access_key=keys["aws_secret_access_key"],
    )


@USES_MOTO_IAM
async def test_keys_scoped_to_the_prefix_pass_the_check_though_head_bucket_is_refused(
    make_datasette, iam_moto
):
    keys = iam_moto.iam_user_keys(
        "tenant",
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::guarded",
            "Condition": {"StringLike": {"s3:prefix": ["uploads/*"]}},
        },
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": "arn:aws:s3:::guarded/uploads/*",
        },
    )
    with pytest.raises(Exception, match="403"):
        iam_moto.client(keys=keys).head_bucket(Bucket="guarded")
    ds = await make_datasette({"s3files": {"storage": "s3", "config": keys_config(iam_moto, keys)}})
    assert (await post(ds, PREPARE)).status_code == 200


@USES_MOTO_IAM
@pytest.mark.parametrize("known_key", [True, False], ids=["no-policy", "unknown-key"])
async def test_refused_keys_are_named_as_access_denied(make_datasette, iam_moto, known_key):
    if known_key:
        keys = iam_moto.iam_user_keys(f"nobody-{known_key}")
        code = "AccessDenied"
    else:
        keys = {"aws_access_key_id": "AKIANOSUCHKEY0000000", "aws_secret_access_key": "not-a-real-secret"}
        code = "InvalidAccessKeyId"
    ds = await make_datasette({"s3files": {"storage": "s3", "config": keys_config(iam_moto, keys)}})
    for path in (PREPARE, CREATE):
        response = await post(ds, path)
        operation = "list_objects_v2" if path == PREPARE else "create_multipart_upload"
        assert_unusable_bucket(
            response,
            f"datasette-files source 's3files': S3 denied access to bucket 'guarded' ({operation}: {code}); "
            "check the source's credentials and the bucket's policy",
        )
        assert keys["aws_secret_access_key"] not in response.text
        assert keys["aws_access_key_id"] not in response.text
