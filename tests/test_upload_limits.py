"""Per-actor limits: unfinished direct uploads and open multipart uploads, per source.

An actor at a limit gets 429 with Retry-After and a message saying what to
finish or cancel; other actors and other sources are not affected; expired
uploads hold no place; concurrent requests cannot overshoot a limit.
"""

import asyncio

import pytest
import pytest_asyncio

from datasette_files_s3 import database
from datasette_files_s3.config import parse_source_config
from datasette_files_s3.errors import ConfigError
from tests.helpers import actor_cookies, complete, post_to_bucket, prepare

MULTIPART = "/-/files-s3/upload/{source}/-/multipart/"


@pytest_asyncio.fixture
async def limited(make_datasette, bucket):
    """Two sources, each allowing 3 unfinished direct uploads and 2 open multipart uploads per actor."""
    config = bucket.source_config(max_pending_uploads=3, max_open_multipart_uploads=2)
    return await make_datasette(
        {"s3files": {"storage": "s3", "config": config}, "s3other": {"storage": "s3", "config": config}}
    )


async def prepares(ds, who="alice", source="s3files", n=1) -> list:
    cookies = actor_cookies(ds, who)
    return [await prepare(ds, cookies, source=source, filename=f"f{i}.txt", size=3) for i in range(n)]


async def create_multipart(ds, who="alice", source="s3files", **extra):
    body = {"filename": "big.bin", "content_type": "application/octet-stream", "size": 6 * 1024**2, **extra}
    return await ds.client.post(
        MULTIPART.format(source=source) + "create", json=body, cookies=actor_cookies(ds, who)
    )


def assert_too_many(response, *fragments, most_seconds: int):
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= most_seconds
    body = response.json()
    assert body["ok"] is False
    for fragment in fragments:
        assert fragment in body["errors"][0], body["errors"]


async def test_direct_uploads_over_the_limit_get_429_saying_what_to_finish(limited):
    responses = await prepares(limited, n=4)
    assert [r.status_code for r in responses[:3]] == [200, 200, 200]
    assert_too_many(
        responses[3],
        "You already have 3 uploads prepared but not completed on source 's3files'",
        "call complete",
        most_seconds=900,
    )


async def test_the_limit_is_per_actor_and_per_source(limited):
    await prepares(limited, n=3)
    assert (await prepares(limited, who="bob"))[0].status_code == 200
    assert (await prepares(limited, source="s3other"))[0].status_code == 200
    assert (await prepares(limited))[0].status_code == 429


async def test_completing_an_upload_frees_its_place(limited):
    first, *_ = await prepares(limited, n=3)
    post_to_bucket(first.json(), b"abc")
    done = await complete(limited, actor_cookies(limited), first.json()["upload_token"])
    assert done.status_code == 201
    assert (await prepares(limited))[0].status_code == 200


async def test_expired_uploads_hold_no_place(limited):
    await prepares(limited, n=3)
    # As if upload_expires had passed: the tokens can no longer be used to send a file.
    await limited.get_internal_database().execute_write(
        f"UPDATE {database.PENDING_TABLE} SET expires_at = expires_at - 3600"
    )
    assert (await prepares(limited))[0].status_code == 200


async def test_concurrent_prepares_cannot_overshoot_the_limit(limited):
    cookies = actor_cookies(limited)
    responses = await asyncio.gather(
        *(prepare(limited, cookies, filename=f"c{n}.txt", size=3) for n in range(10))
    )
    assert sorted(r.status_code for r in responses) == [200] * 3 + [429] * 7
    rows = await limited.get_internal_database().execute(f"SELECT count(*) FROM {database.PENDING_TABLE}")
    assert rows.single_value() == 3


async def open_uploads(bucket) -> int:
    return len(bucket.multipart_uploads())  # under the test's own prefix, never the whole bucket


async def test_multipart_uploads_over_the_limit_get_429_saying_what_to_cancel(limited, bucket):
    first = await create_multipart(limited)
    assert first.status_code == 200
    assert (await create_multipart(limited)).status_code == 200
    refused = await create_multipart(limited)
    assert_too_many(
        refused,
        "You already have 2 multipart uploads open on source 's3files'",
        "multipart/abort",
        most_seconds=24 * 3600,
    )
    assert await open_uploads(bucket) == 2  # refused before S3 was asked
    # Still at the limit, the actor can resume an upload they hold...
    resumed = await create_multipart(limited, resume_token=first.json()["upload_token"])
    assert resumed.json()["resumed"] is True
    # ...and cancelling one frees its place.
    aborted = await limited.client.post(
        MULTIPART.format(source="s3files") + "abort",
        json={"upload_token": first.json()["upload_token"]},
        cookies=actor_cookies(limited),
    )
    assert aborted.status_code == 200
    assert (await create_multipart(limited)).status_code == 200


async def test_concurrent_multipart_creates_cannot_overshoot_and_leave_nothing_open(limited, bucket):
    responses = await asyncio.gather(*(create_multipart(limited) for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [200, 200, 429, 429, 429, 429]
    # Those refused after S3 created their upload had it aborted.
    assert await open_uploads(bucket) == 2


def test_limits_default_to_what_no_person_meets():
    config = parse_source_config("s", {"bucket": "b"})
    assert (config.max_pending_uploads, config.max_open_multipart_uploads) == (100, 20)
    config = parse_source_config("s", {"bucket": "b", "max_pending_uploads": "7"})
    assert config.max_pending_uploads == 7


@pytest.mark.parametrize("value", [0, -1, "many", True, 1.5])
@pytest.mark.parametrize("option", ["max_pending_uploads", "max_open_multipart_uploads"])
def test_limits_must_be_whole_numbers(option, value):
    with pytest.raises(ConfigError, match=f"option '{option}' must be a whole number, at least 1"):
        parse_source_config("s", {"bucket": "b", option: value})


async def test_single_request_over_5_gib_names_the_sources_multipart_uploader(ds, bucket):
    response = await prepare(ds, actor_cookies(ds), filename="huge.bin", size=5 * 1024**3 + 1)
    assert response.status_code == 400
    assert "/-/files-s3/upload/s3files" in response.json()["errors"][0]


async def test_anonymous_uploaders_share_one_allowance_per_source(make_datasette, bucket):
    """The documented rule (docs/security.md), not an oversight: where anyone may
    upload, every anonymous client shares one allowance. Client addresses are not
    identities (one proxy or NAT address is many people; one IPv6 client is
    millions of addresses), so a per-address rule would be no fairer and easy to
    dodge. Signed-in actors keep their own allowance."""
    config = bucket.source_config(max_pending_uploads=2)
    ds = await make_datasette(
        {"s3files": {"storage": "s3", "config": config}}, permissions={"files-upload": True}
    )
    for _ in range(2):  # two anonymous clients, or one: Datasette cannot tell
        assert (await prepare(ds, {}, size=3)).status_code == 200
    third = await prepare(ds, {}, size=3)
    assert_too_many(third, "2 uploads prepared", most_seconds=900 + 60)
    assert (await prepare(ds, actor_cookies(ds, "alice"), size=3)).status_code == 200
