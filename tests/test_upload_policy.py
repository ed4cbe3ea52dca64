"""The presigned POST policy we sign, decoded and checked condition by condition.

moto enforces none of these conditions, so the policy itself is the test
subject here; test_confirm.py checks that confirm enforces what matters.
"""

import base64
import json
import time
from datetime import datetime

import pytest

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
