"""`datasette files-s3 cleanup`: abandoned uploads the pending table names, incomplete
multipart uploads, and the lifecycle rule; never a registered file or a key outside the prefix."""

from __future__ import annotations

import sqlite3
import time

import pytest
import pytest_asyncio

from datasette_files_s3 import bucket_config, cleanup
from tests.cli_support import (
    SOURCE,
    add_pending,
    bucket_keys,
    files_s3,
)
from tests.helpers import actor_cookies, post_to_bucket, prepare, upload


@pytest_asyncio.fixture
async def leftovers(tmp_path, s3_server, bucket_name, make_datasette):
    """An internal database and a bucket holding every kind of thing cleanup must judge."""
    internal = str(tmp_path / "internal.db")
    ds = await make_datasette(
        {SOURCE: {"storage": "s3", "config": s3_server.source_config(bucket_name)}}, internal=internal
    )
    cookies = actor_cookies(ds)
    upload_ids = {}
    await upload(ds, cookies, b"registered file")
    expired = (await prepare(ds, cookies, filename="expired.txt", size=7)).json()
    post_to_bucket(expired, b"expired", "expired.txt")
    fresh = (await prepare(ds, cookies, filename="fresh.txt", size=5)).json()
    post_to_bucket(fresh, b"fresh", "fresh.txt")
    client = s3_server.client()
    # moto stamps every multipart upload as started in 2010: always "old" by --older-than.
    for key, size in (
        ("uploads/stale/big.bin", 1000),
        ("uploads/abandoned/big.bin", 500),
        ("uploads/inuse/big.bin", 0),
    ):
        upload_id = client.create_multipart_upload(Bucket=bucket_name, Key=key)["UploadId"]
        upload_ids[key] = upload_id
        if size:
            client.upload_part(
                Bucket=bucket_name, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * size
            )
    client.create_multipart_upload(Bucket=bucket_name, Key="elsewhere/big.bin")
    client.put_object(Bucket=bucket_name, Key="elsewhere/expired.txt", Body=b"not ours")
    past, future = time.time() - 2 * 3600, time.time() + 3600
    with sqlite3.connect(internal) as db:
        db.execute(
            "UPDATE datasette_files_s3_pending SET expires_at = ? WHERE filename = 'expired.txt'", [past]
        )
        # A crash between registering and forgetting leaves a pending row for a registered file.
        file_id, path = db.execute("SELECT id, path FROM datasette_files").fetchone()
        add_pending(db, file_id, path, past)
        add_pending(db, "df-abandoned", "abandoned/big.bin", past, upload_ids["uploads/abandoned/big.bin"])
        add_pending(db, "df-inuse", "inuse/big.bin", future, upload_ids["uploads/inuse/big.bin"])
        # A pending row pointing outside the prefix must never become a delete.
        add_pending(db, "df-outside", "../elsewhere/expired.txt", past)
    return {
        "internal": internal,
        "keys_before": sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket_name)["Contents"]),
    }


# moto stamps every multipart upload as started in 2010, so cleanup finds the
# leftovers' uploads old; a real store dates them now.
DATED_2010 = pytest.mark.store(
    "moto", reason="moto dates every multipart upload 2010, so cleanup finds it old"
)


def multipart_keys(s3_server, bucket_name) -> list[str]:
    return sorted(
        u["Key"] for u in s3_server.client().list_multipart_uploads(Bucket=bucket_name).get("Uploads", [])
    )


@DATED_2010
def test_cleanup_aborts_an_old_incomplete_multipart_upload(leftovers, s3_server, bucket_name, config_path):
    result = files_s3("cleanup", SOURCE, "-c", config_path, "--internal", leftovers["internal"])
    assert result.exit_code == 0, result.output
    assert "abort uploads/stale/big.bin" in result.output
    assert "uploads/stale/big.bin" not in multipart_keys(s3_server, bucket_name)


def test_cleanup_keeps_a_multipart_upload_whose_token_is_still_valid(
    leftovers, s3_server, bucket_name, config_path
):
    result = files_s3("cleanup", SOURCE, "-c", config_path, "--internal", leftovers["internal"])
    assert "keep uploads/inuse/big.bin (multipart upload still in use)" in result.output
    assert "uploads/inuse/big.bin" in multipart_keys(s3_server, bucket_name)


def test_cleanup_aborts_an_expired_tokens_multipart_upload_whatever_its_age(
    leftovers, s3_server, bucket_name, config_path
):
    args = (
        "cleanup",
        SOURCE,
        "-c",
        config_path,
        "--internal",
        leftovers["internal"],
        "--older-than",
        "1000w",
    )
    files_s3(*args)
    assert multipart_keys(s3_server, bucket_name) == [
        "elsewhere/big.bin",
        "uploads/inuse/big.bin",
        "uploads/stale/big.bin",
    ]


@DATED_2010
def test_cleanup_deletes_an_expired_unconfirmed_object(leftovers, s3_server, bucket_name, config_path):
    result = files_s3("cleanup", SOURCE, "-c", config_path, "--internal", leftovers["internal"])
    assert not [
        k
        for k in bucket_keys(s3_server, bucket_name)
        if k.endswith("/expired.txt") and k.startswith("uploads/")
    ]
    assert "Aborted 2 multipart upload(s), deleted 1 object(s), freed 1,507 bytes." in result.output
    with sqlite3.connect(leftovers["internal"]) as db:
        assert not db.execute(
            "SELECT 1 FROM datasette_files_s3_pending WHERE filename = 'expired.txt'"
        ).fetchall()


def test_cleanup_leaves_registered_fresh_and_outside_objects_alone(
    leftovers, s3_server, bucket_name, config_path
):
    files_s3("cleanup", SOURCE, "-c", config_path, "--internal", leftovers["internal"])
    remaining = bucket_keys(s3_server, bucket_name)
    expired = [k for k in leftovers["keys_before"] if k.startswith("uploads/") and k.endswith("/expired.txt")]
    assert remaining == sorted(set(leftovers["keys_before"]) - set(expired))
    assert "elsewhere/expired.txt" in remaining
    assert any(k.endswith("/fresh.txt") for k in remaining)
    assert any(k.endswith("/hello.txt") for k in remaining)  # registered, with a stale pending row


def test_safe_key_refuses_paths_that_leave_the_prefix():
    assert cleanup.safe_key("uploads/", "abc/file.txt") == "uploads/abc/file.txt"
    for path in ("../elsewhere/x", "/abs", "a//b", "a/./b", ""):
        assert cleanup.safe_key("uploads/", path) is None


@DATED_2010
def test_cleanup_dry_run_changes_nothing(leftovers, s3_server, bucket_name, config_path):
    result = files_s3("cleanup", SOURCE, "-c", config_path, "--internal", leftovers["internal"], "--dry-run")
    assert result.exit_code == 0, result.output
    assert (
        "Would abort 2 multipart upload(s), would delete 1 object(s), would free 1,507 bytes" in result.output
    )
    assert bucket_keys(s3_server, bucket_name) == leftovers["keys_before"]
    assert len(multipart_keys(s3_server, bucket_name)) == 4
    with sqlite3.connect(leftovers["internal"]) as db:
        assert db.execute("SELECT count(*) FROM datasette_files_s3_pending").fetchone()[0] == 6


@DATED_2010
def test_cleanup_without_internal_deletes_no_objects(leftovers, s3_server, bucket_name, config_path):
    result = files_s3("cleanup", SOURCE, "-c", config_path)
    assert result.exit_code == 0, result.output
    assert "no --internal database given" in result.output
    assert bucket_keys(s3_server, bucket_name) == leftovers["keys_before"]
    assert multipart_keys(s3_server, bucket_name) == ["elsewhere/big.bin"]


def test_cleanup_lifecycle_installs_rule_and_keeps_others(s3_server, bucket_name, config_path):
    client = s3_server.client()
    foreign = {
        "ID": "expire-logs",
        "Status": "Enabled",
        "Filter": {"Prefix": "logs/"},
        "Expiration": {"Days": 30},
    }
    client.put_bucket_lifecycle_configuration(Bucket=bucket_name, LifecycleConfiguration={"Rules": [foreign]})
    result = files_s3("cleanup", SOURCE, "-c", config_path, "--lifecycle", "--older-than", "36h")
    assert result.exit_code == 0, result.output
    rules = client.get_bucket_lifecycle_configuration(Bucket=bucket_name)["Rules"]
    # A lifecycle configuration's rules have no order (Ceph RGW lists them by ID).
    by_id = {rule["ID"]: rule for rule in rules}
    ours = bucket_config.lifecycle_rule("uploads/", 36 * 3600)
    assert len(rules) == 2 and by_id == {"expire-logs": foreign, ours["ID"]: ours}
    assert by_id[ours["ID"]]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}


def test_cleanup_rejects_an_internal_database_datasette_never_used(tmp_path, config_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = files_s3("cleanup", SOURCE, "-c", config_path, "--internal", str(empty))
    assert result.exit_code == 1
    assert "internal database has no" in result.output
