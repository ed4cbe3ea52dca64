"""The presigned POST policy we sign, decoded and checked condition by condition.

moto enforces none of these conditions, so the policy itself is the test
subject here; test_confirm.py checks that confirm enforces what matters.
"""

import base64
import json
import time
from datetime import datetime

import pytest

from datasette_files_s3 import files_bridge, s3_presign
from tests.helpers import actor_cookies, prepare


def decode_policy(fields: dict) -> dict:
    return json.loads(base64.b64decode(fields["policy"]))


def conditions_by_name(policy: dict) -> dict:
    """{"key": ("eq", value), "content-length-range": (min, max), ...}"""
    found = {}
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            ((name, value),) = condition.items()
            found[name.lower()] = ("eq", value)
        elif condition[0] == "content-length-range":
            found["content-length-range"] = (condition[1], condition[2])
        else:
            found[condition[1].lstrip("$").lower()] = (condition[0], condition[2])
    return found


@pytest.fixture
async def policy_and_fields(ds, bucket):
    response = await prepare(
        ds, actor_cookies(ds), filename="photo.png", content_type="image/png", size=12345
    )
    assert response.status_code == 200, response.text
    fields = response.json()["upload_fields"]
    return decode_policy(fields), fields


async def test_policy_pins_exact_key(policy_and_fields, bucket):
    policy, fields = policy_and_fields
    conditions = conditions_by_name(policy)
    assert conditions["key"] == ("eq", fields["key"])
    assert fields["key"].startswith(bucket.prefix) and fields["key"].endswith("/photo.png")


async def test_policy_size_range_is_exactly_declared_size(policy_and_fields):
    policy, _ = policy_and_fields
    assert conditions_by_name(policy)["content-length-range"] == (12345, 12345)


async def test_policy_content_type_equals_declared(policy_and_fields):
    policy, fields = policy_and_fields
    assert conditions_by_name(policy)["content-type"] == ("eq", "image/png")
    assert fields["Content-Type"] == "image/png"


async def test_policy_binds_bucket(policy_and_fields, bucket):
    policy, _ = policy_and_fields
    assert conditions_by_name(policy)["bucket"] == ("eq", bucket.name)


async def test_policy_grants_nothing_public(policy_and_fields):
    policy, fields = policy_and_fields
    assert "acl" not in conditions_by_name(policy)
    assert not any(name.lower() in ("acl", "x-amz-acl") for name in fields)


async def test_policy_expires_within_configured_minutes(policy_and_fields):
    policy, _ = policy_and_fields
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00")).timestamp()
    assert time.time() < expiration <= time.time() + 900 + 5


async def test_upload_expires_option_shortens_policy(make_datasette, bucket):
    ds = await make_datasette(
        {"s3files": {"storage": "s3", "config": bucket.source_config(upload_expires=60)}}
    )
    response = await prepare(ds, actor_cookies(ds), size=5)
    policy = decode_policy(response.json()["upload_fields"])
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00")).timestamp()
    assert expiration <= time.time() + 60 + 5


async def test_each_prepare_gets_its_own_key(ds, bucket):
    keys = set()
    for _ in range(3):
        response = await prepare(ds, actor_cookies(ds), filename="same.txt", size=3)
        keys.add(response.json()["upload_fields"]["key"])
    assert len(keys) == 3


def without_the_time(signed: dict) -> dict:
    """A presigned POST's URL, fields and policy, with what depends on the second it was signed removed."""
    fields = dict(signed["fields"])
    policy = decode_policy(fields)
    for name in ("policy", "x-amz-signature", "x-amz-date"):
        fields.pop(name)
    fields["x-amz-credential"] = fields["x-amz-credential"].split("/", 2)[2]  # keys id and date out
    policy.pop("expiration")
    policy["conditions"] = [
        c for c in policy["conditions"] if not ("x-amz-date" in c or "x-amz-credential" in c)
    ]
    return {"url": signed["url"], "fields": fields, "field order": list(signed["fields"]), "policy": policy}


async def test_our_presigned_post_is_boto3s(ds, bucket):
    """s3_presign.presigned_post signs what boto3's generate_presigned_post does, field for
    field and condition for condition (the stores in --s3=localstack and ceph check the signature)."""
    connection = await files_bridge.storage_for("s3files").connection()
    key = connection.key("0123/a.txt")
    fields = {"Content-Type": "text/plain", "x-amz-checksum-algorithm": "SHA256"}
    conditions = [{"Content-Type": "text/plain"}, ["content-length-range", 3, 3]]
    ours = s3_presign.presigned_post(connection, key, dict(fields), list(conditions), 600)
    theirs = connection.presign_client.generate_presigned_post(
        Bucket=connection.bucket, Key=key, Fields=dict(fields), Conditions=list(conditions), ExpiresIn=600
    )
    assert without_the_time(ours) == without_the_time(theirs)
    expires = datetime.fromisoformat(decode_policy(ours["fields"])["expiration"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - (time.time() + 600)) < 60


async def test_prepare_asks_boto3_for_a_post_once_per_bucket(ds, bucket, monkeypatch):
    """boto3's generate_presigned_post runs its request machinery on every call;
    prepare learns the URL and signing region from it once, then signs alone."""
    cookies = actor_cookies(ds)
    assert (await prepare(ds, cookies, size=3)).status_code == 200
    client = (await files_bridge.storage_for("s3files").connection()).presign_client
    calls = []
    real = client.generate_presigned_post

    def counting(*args, **kwargs):
        # A spy, not a mock: boto3 still signs.
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "generate_presigned_post", counting)
    for _ in range(3):
        assert (await prepare(ds, cookies, size=3)).status_code == 200
    assert calls == []
