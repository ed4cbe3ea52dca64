"""`datasette files-s3 ...` through Datasette's own CLI entry point, against
this run's S3 server over HTTP.

Only bucket CORS rules apply there (moto runs with MOTO_DISABLE_GLOBAL_CORS,
see tests/s3_servers.py), so a bucket without a CORS rule really refuses
preflights and `doctor` can fail.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from click.testing import CliRunner
from datasette.cli import cli
from ulid import ULID

from datasette_files_s3 import bucket_config, cleanup, doctor, keys
from tests.fault_injection import Broker
from tests.helpers import actor_cookies, datasette_config, post_to_bucket, prepare, upload
from tests.live_servers import free_port
from tests.s3_servers import MotoServer

ORIGIN = "https://datasette.example.com"
SOURCE = "s3files"


def write_config(tmp_path, source_config: dict, name: str = "datasette.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(datasette_config({SOURCE: {"storage": "s3", "config": source_config}})))
    return str(path)


@pytest.fixture
def config_path(tmp_path, s3_server, bucket_name):
    return write_config(tmp_path, s3_server.source_config(bucket_name))


def files_s3(*args, env=None):
    """Run `datasette files-s3 ARGS` as a user would, through Datasette's CLI."""
    return CliRunner().invoke(cli, ["files-s3", *args], env=env, catch_exceptions=False)


def broker_source_config(broker, s3_server, secret: str) -> dict:
    return {
        "credentials_url": broker.url,
        "credentials_url_secret": secret,
        "endpoint_url": s3_server.endpoint_url,
        "region": "us-east-1",
    }


@pytest.fixture
def broker(bucket_name, s3_server):
    server = Broker(
        "right-broker-secret",
        f"s3://{bucket_name}/brokered/",
        s3_server.access_key_id,
        s3_server.secret_access_key,
        "broker-session-token",
    ).start()
    yield server
    server.stop()


# --- sources ---------------------------------------------------------------


def test_sources_lists_bucket_prefix_endpoint_and_credentials(config_path, bucket_name, s3_server):
    result = files_s3("sources", "-c", config_path)
    assert result.exit_code == 0, result.output
    assert bucket_name in result.output
    assert "uploads/" in result.output
    assert s3_server.endpoint_url in result.output
    assert "config keys" in result.output


def test_sources_reads_settings_and_env_like_serve(tmp_path, s3_server, bucket_name):
    config = s3_server.source_config({"$env": "CLI_TEST_BUCKET"})
    path = write_config(tmp_path, config)
    result = files_s3(
        "sources",
        "--json",
        "-c",
        path,
        "-s",
        f"plugins.datasette-files.sources.{SOURCE}.config.prefix",
        "from-setting",
        env={"CLI_TEST_BUCKET": "bucket-from-env"},
    )
    assert result.exit_code == 0, result.output
    [summary] = json.loads(result.output)
    assert (summary["bucket"], summary["prefix"]) == ("bucket-from-env", "from-setting/")


# --- cors ------------------------------------------------------------------

FOREIGN_RULE = {"ID": "someone-else", "AllowedOrigins": ["https://other.example"], "AllowedMethods": ["GET"]}


def test_cors_apply_adds_our_rule_and_keeps_foreign_rules(s3_server, bucket_name, config_path):
    client = s3_server.client()
    client.put_bucket_cors(Bucket=bucket_name, CORSConfiguration={"CORSRules": [FOREIGN_RULE]})
    result = files_s3("cors", SOURCE, "-c", config_path, "--origin", ORIGIN, "--apply")
    assert result.exit_code == 0, result.output
    rules = client.get_bucket_cors(Bucket=bucket_name)["CORSRules"]
    assert rules == [bucket_config.needed_cors_rule([ORIGIN]), FOREIGN_RULE]
    assert rules[0]["ExposeHeaders"] == ["ETag"]


def test_cors_apply_again_keeps_earlier_origins(s3_server, bucket_name, config_path):
    files_s3("cors", SOURCE, "-c", config_path, "--origin", ORIGIN, "--apply")
    files_s3("cors", SOURCE, "-c", config_path, "--origin", "http://localhost:8001", "--apply")
    [rule] = s3_server.client().get_bucket_cors(Bucket=bucket_name)["CORSRules"]
    assert rule["AllowedOrigins"] == sorted([ORIGIN, "http://localhost:8001"])


def test_cors_dry_run_prints_the_exact_json_and_changes_nothing(s3_server, bucket_name, config_path):
    client = s3_server.client()
    client.put_bucket_cors(Bucket=bucket_name, CORSConfiguration={"CORSRules": [FOREIGN_RULE]})
    result = files_s3("cors", SOURCE, "-c", config_path, "--origin", ORIGIN, "--apply", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "CORSRules": [bucket_config.needed_cors_rule([ORIGIN]), FOREIGN_RULE]
    }
    assert client.get_bucket_cors(Bucket=bucket_name)["CORSRules"] == [FOREIGN_RULE]


def test_cors_unknown_source_is_a_usage_error(config_path):
    result = files_s3("cors", "nope", "-c", config_path, "--origin", ORIGIN)
    assert result.exit_code == 2
    assert SOURCE in result.output


# --- doctor ----------------------------------------------------------------


def check_lines(output: str) -> dict[str, str]:
    """{check name: its line} from doctor's output."""
    lines = {}
    for line in output.splitlines():
        for mark in ("[PASS]", "[WARN]", "[FAIL]"):
            if line.strip().startswith(mark):
                name = line.strip()[len(mark) :].split(": ", 1)[0].strip()
                lines[name] = line.strip()
    return lines


def test_doctor_passes_on_a_correct_bucket(s3_server, bucket_name, config_path):
    files_s3("cors", SOURCE, "-c", config_path, "--origin", ORIGIN, "--apply")
    files_s3("cleanup", SOURCE, "-c", config_path, "--lifecycle")
    result = files_s3("doctor", SOURCE, "-c", config_path, "--origin", ORIGIN)
    assert result.exit_code == 0, result.output
    lines = check_lines(result.output)
    for name in ("credentials", "bucket", "clock", "write", "read", "range read", "presign", "delete"):
        assert lines[name].startswith("[PASS]"), result.output
    assert lines[f"cors {ORIGIN}"].startswith("[PASS]")
    assert lines["lifecycle"].startswith("[PASS]")
    assert s3_server.client().list_objects_v2(Bucket=bucket_name).get("KeyCount") == 0  # probe removed


def test_doctor_fails_on_a_bucket_without_cors(config_path):
    result = files_s3("doctor", SOURCE, "-c", config_path, "--origin", ORIGIN)
    assert result.exit_code == 1
    assert check_lines(result.output)[f"cors {ORIGIN}"].startswith(f"[FAIL] cors {ORIGIN}: preflight refused")
    assert (
        f"fix: datasette files-s3 cors {SOURCE} -c {config_path} --origin {ORIGIN} --apply" in result.output
    )


def test_doctor_fails_when_etag_is_not_exposed(tmp_path, s3_server):
    name = f"cli-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(name, cors_origins=[ORIGIN], expose_etag=False)
    path = write_config(tmp_path, s3_server.source_config(name))
    result = files_s3("doctor", SOURCE, "-c", path, "--origin", ORIGIN)
    assert result.exit_code == 1
    assert "ETag is not exposed" in check_lines(result.output)[f"cors {ORIGIN}"]


@pytest.mark.parametrize(
    "bucket_fault, message, fix",
    [
        ("missing bucket", "does not exist", "fix: create the bucket, or fix the source's bucket option"),
        ("unreachable endpoint", "cannot reach the S3 endpoint", "fix: check endpoint_url"),
    ],
)
def test_doctor_fails_on_a_bucket_fault(tmp_path, s3_server, bucket_name, bucket_fault, message, fix):
    if bucket_fault == "missing bucket":
        config = s3_server.source_config("no-such-bucket-here")
    else:
        config = s3_server.source_config(bucket_name, endpoint_url=f"http://127.0.0.1:{free_port()}")
    result = files_s3("doctor", SOURCE, "-c", write_config(tmp_path, config), "--origin", ORIGIN)
    assert result.exit_code == 1
    assert message in check_lines(result.output)["bucket"]
    assert fix in result.output


def test_doctor_stops_after_a_failed_bucket_check(tmp_path, s3_server):
    """The README's promise: nothing after a failed bucket check runs, not even the clock."""
    path = write_config(tmp_path, s3_server.source_config("no-such-bucket-here"))
    result = files_s3("doctor", SOURCE, "-c", path, "--origin", ORIGIN)
    assert result.exit_code == 1
    assert list(check_lines(result.output)) == ["credentials", "bucket"]


@pytest.mark.store("permissive", reason="the POSTs that break the policy must get through")
def test_doctor_warns_when_the_store_does_not_enforce_the_post_policy(s3_server, bucket_name, config_path):
    result = files_s3("doctor", SOURCE, "-c", config_path)
    assert result.exit_code == 0, result.output  # a warning, not a failure
    line = check_lines(result.output)["policy"]
    assert line.startswith(
        "[WARN] policy: the store accepted a POST one byte over the signed size and one to a key "
        "it was not signed for: it does not enforce POST policies"
    )
    assert (
        "any user with upload permission can write any size, and overwrite other keys in the bucket "
        "until confirm catches it, or forever for keys we never confirm" in line
    )
    assert "fix: use a store that enforces POST policies" in result.output
    assert s3_server.client().list_objects_v2(Bucket=bucket_name).get("KeyCount") == 0  # probes removed


@pytest.mark.store("enforcing")
def test_doctor_says_when_the_store_enforces_the_post_policy(s3_server, bucket_name, config_path):
    result = files_s3("doctor", SOURCE, "-c", config_path)
    assert check_lines(result.output)["policy"] == (
        "[PASS] policy: the store refused a POST one byte over the signed size (HTTP 400 EntityTooLarge) "
        "and one to a key it was not signed for (HTTP 403 AccessDenied)"
    )
    assert s3_server.client().list_objects_v2(Bucket=bucket_name).get("KeyCount") == 0


def test_doctor_fails_on_bad_credentials(tmp_path, s3_server, broker):
    path = write_config(tmp_path, broker_source_config(broker, s3_server, "wrong-broker-secret"))
    result = files_s3("doctor", SOURCE, "-c", path, "--origin", ORIGIN)
    assert result.exit_code == 1
    assert "answered HTTP 403" in check_lines(result.output)["credentials"]
    assert "fix: check credentials_url and credentials_url_secret" in result.output


def test_doctor_says_when_broker_credentials_expire(tmp_path, s3_server, broker):
    path = write_config(tmp_path, broker_source_config(broker, s3_server, "right-broker-secret"))
    result = files_s3("doctor", SOURCE, "-c", path)
    line = check_lines(result.output)["credentials"]
    assert line.startswith("[PASS]") and "expire in 60 min" in line


def test_clock_skew_over_a_minute_fails():
    check = doctor.judge_clock("Tue, 24 Nov 2026 03:00:00 GMT", now=1795489200 + 120)
    assert check.status == doctor.FAIL and "120s ahead" in check.message


# --- cleanup ---------------------------------------------------------------


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


def add_pending(db, file_id, path, expires_at, upload_id=None, source=SOURCE):
    """A row in our pending-uploads table, as prepare would have written it."""
    db.execute(
        "INSERT INTO datasette_files_s3_pending (file_id, source, path, kind, upload_id, filename,"
        " content_type, size, created_at, expires_at) VALUES (?, ?, ?, ?, ?, 'x', 'text/plain', 1, 0, ?)",
        [file_id, source, path, "multipart" if upload_id else "post", upload_id, expires_at],
    )


def bucket_keys(s3_server, bucket_name) -> list[str]:
    return sorted(
        o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket_name).get("Contents", [])
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
    assert rules == [foreign, bucket_config.lifecycle_rule("uploads/", 36 * 3600)]
    assert rules[1]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}


def test_cleanup_rejects_an_internal_database_datasette_never_used(tmp_path, config_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = files_s3("cleanup", SOURCE, "-c", config_path, "--internal", str(empty))
    assert result.exit_code == 1
    assert "internal database has no" in result.output


# --- cleanup of objects no table records -----------------------------------

HOUR, DAY = 3600, 86400
# These tests run on their own in-process moto whatever this run's server is: once is enough.
AGES_OBJECTS = pytest.mark.store("moto", reason="ages objects in moto's in-process backend")


@pytest.fixture(scope="session")
def backdating_moto():
    """moto on a thread of this process, so objects can be written as if long ago (`backdate`)."""
    server = MotoServer(in_process=True).start()
    yield server
    server.stop()


@dataclass
class AgedBucket:
    """A bucket whose objects can be written as if long ago, and a config for its source."""

    moto: MotoServer
    name: str
    tmp_path: Path

    def config(self, **overrides) -> str:
        return write_config(self.tmp_path, self.moto.source_config(self.name, **overrides), "aged.json")

    def put(self, *keys_to_write: str, age: float = 0) -> None:
        for key in keys_to_write:
            self.moto.client().put_object(Bucket=self.name, Key=key, Body=b"orphan")
            self.moto.backdate(self.name, key, age)

    def keys(self) -> list[str]:
        return bucket_keys(self.moto, self.name)


@pytest.fixture
def aged(backdating_moto, tmp_path):
    name = f"aged-{uuid.uuid4().hex[:16]}"
    backdating_moto.create_bucket(name)
    return AgedBucket(backdating_moto, name, tmp_path)


def our_path(age: float, filename: str = "orphan.txt") -> str:
    """A path below the prefix as uploads lay it out, for a file id made `age` seconds ago."""
    return keys.path_for("df-" + str(ULID.from_timestamp(time.time() - age)).lower(), filename)


def put_old(aged: AgedBucket, age: float) -> str:
    """An object laid out as ours, made and written to the bucket `age` seconds ago; its key."""
    key = "uploads/" + our_path(age)
    aged.put(key, age=age)
    return key


def first_saw_source(internal_path: str, modifier: str) -> None:
    """Set when the internal database first recorded the source, as SQLite `datetime('now', modifier)`."""
    with sqlite3.connect(internal_path) as db:
        db.execute(
            "UPDATE datasette_files_sources SET created_at = datetime('now', ?) WHERE slug = ?",
            [modifier, SOURCE],
        )


@pytest_asyncio.fixture
async def internal(tmp_path, aged, make_datasette):
    """An internal database `datasette serve --internal` has used for a month: no files yet."""
    path = str(tmp_path / "internal.db")
    await make_datasette(
        {SOURCE: {"storage": "s3", "config": aged.moto.source_config(aged.name)}}, internal=path
    )
    first_saw_source(path, "-30 days")
    return path


def put_objects(s3_server, bucket_name, *keys_to_write: str) -> None:
    for key in keys_to_write:
        s3_server.client().put_object(Bucket=bucket_name, Key=key, Body=b"orphan")


def register_file(internal_path: str, path: str) -> None:
    """A datasette-files row for an object, as its upload would have written it."""
    with sqlite3.connect(internal_path) as db:
        db.execute(
            "INSERT INTO datasette_files (id, source_id, path, filename)"
            " SELECT ?, id, ?, 'orphan.txt' FROM datasette_files_sources WHERE slug = ?",
            ["df-" + path.split("/")[0], path, SOURCE],
        )


def cleanup_unrecorded(config: str, internal: str, *args: str):
    return files_s3("cleanup", SOURCE, "-c", config, "--internal", internal, "--unrecorded", *args)


@AGES_OBJECTS
def test_cleanup_unrecorded_deletes_an_old_object_no_table_records(internal, aged):
    key = put_old(aged, 2 * DAY)
    result = cleanup_unrecorded(aged.config(), internal)
    assert result.exit_code == 0, result.output
    assert f"delete {key} (uploaded but never confirmed; no pending record, 6 bytes)" in result.output
    assert aged.keys() == []


@AGES_OBJECTS
def test_cleanup_without_unrecorded_counts_an_old_unrecorded_object_and_keeps_it(internal, aged):
    key = put_old(aged, 2 * DAY)
    result = files_s3("cleanup", SOURCE, "-c", aged.config(), "--internal", internal)
    assert result.exit_code == 0, result.output
    assert (
        "note: 1 object(s) (6 bytes) laid out as <ulid>/<filename> are old enough and this internal "
        "database has no record of them: kept. --unrecorded deletes them" in result.output
    )
    assert key not in result.output
    assert "deleted 0 object(s)" in result.output
    assert aged.keys() == [key]


@AGES_OBJECTS
def test_cleanup_unrecorded_without_internal_is_a_usage_error(aged):
    result = files_s3("cleanup", SOURCE, "-c", aged.config(), "--unrecorded")
    assert result.exit_code == 2
    assert "--unrecorded needs --internal PATH" in result.output


@pytest.mark.parametrize(
    "age, older_than, source_config",
    [
        pytest.param(0, "24h", {}, id="just-made"),
        # Older than --older-than and than the 30-minute tokens, but within their
        # lifetime plus the hour's confirm grace (and a minute's skew): 1 h 31 min.
        pytest.param(
            1.25 * HOUR,
            "30m",
            {"upload_expires": 1800, "multipart_expires": 1800},
            id="token-could-still-confirm",
        ),
        pytest.param(2 * DAY, "24h", {"multipart_expires": 3 * DAY}, id="long-multipart-token"),
        pytest.param(2 * DAY, "3d", {}, id="younger-than-older-than"),
    ],
)
@AGES_OBJECTS
def test_cleanup_keeps_an_unrecorded_object_until_old_enough(internal, aged, age, older_than, source_config):
    key = put_old(aged, age)
    result = cleanup_unrecorded(aged.config(**source_config), internal, "--older-than", older_than)
    assert result.exit_code == 0, result.output
    assert f"keep {key} (not registered, no pending record, but only" in result.output
    assert aged.keys() == [key]


@AGES_OBJECTS
def test_cleanup_keeps_an_unrecorded_object_just_written_to_the_bucket(internal, aged):
    # A multipart upload started two days ago whose complete has just finished in S3.
    key = "uploads/" + our_path(2 * DAY)
    aged.put(key, age=0)
    result = cleanup_unrecorded(aged.config(), internal)
    assert f"keep {key} (not registered, no pending record, but only 0.0h old in the bucket" in result.output
    assert aged.keys() == [key]


@AGES_OBJECTS
def test_cleanup_keeps_an_unrecorded_object_another_source_has_pending(internal, aged):
    key = put_old(aged, 2 * DAY)
    path = key.removeprefix("uploads/")
    with sqlite3.connect(internal) as db:
        add_pending(db, "df-" + path.split("/")[0], path, time.time() - DAY, source="other-source")
    result = cleanup_unrecorded(aged.config(), internal)
    kept = f"keep {key} (pending upload of source 'other-source': left to that source's cleanup)"
    assert kept in result.output
    assert aged.keys() == [key]


@AGES_OBJECTS
def test_cleanup_keeps_an_unrecorded_object_older_than_the_databases_record_of_the_source(internal, aged):
    key = put_old(aged, 2 * DAY)
    first_saw_source(internal, "-1 day")
    result = cleanup_unrecorded(aged.config(), internal)
    assert result.exit_code == 0, result.output
    assert (
        f"note: 1 object(s) (6 bytes) this internal database has no record of were made before it "
        f"first saw source '{SOURCE}'" in result.output
    )
    assert aged.keys() == [key]


@AGES_OBJECTS
def test_cleanup_keeps_unrecorded_objects_of_a_source_the_database_never_saw(internal, aged):
    key = put_old(aged, 2 * DAY)
    with sqlite3.connect(internal) as db:
        db.execute("DELETE FROM datasette_files_sources WHERE slug = ?", [SOURCE])
    result = cleanup_unrecorded(aged.config(), internal)
    assert result.exit_code == 0, result.output
    assert f"does not record when it first saw source '{SOURCE}'" in result.output
    assert aged.keys() == [key]


@AGES_OBJECTS
def test_cleanup_keeps_an_old_registered_object(internal, aged):
    key = put_old(aged, 2 * DAY)
    register_file(internal, key.removeprefix("uploads/"))
    result = cleanup_unrecorded(aged.config(), internal)
    assert result.exit_code == 0, result.output
    assert aged.keys() == [key]
    assert "deleted 0 object(s)" in result.output


@AGES_OBJECTS
def test_cleanup_keeps_an_old_object_whose_pending_token_is_still_valid(internal, aged):
    key = put_old(aged, 2 * DAY)
    path = key.removeprefix("uploads/")
    with sqlite3.connect(internal) as db:
        add_pending(db, "df-" + path.split("/")[0], path, time.time() + HOUR)
    result = cleanup_unrecorded(aged.config(), internal)
    assert f"keep {key} (upload still within its token's lifetime)" in result.output
    assert aged.keys() == [key]


@AGES_OBJECTS
def test_cleanup_never_touches_objects_laid_out_otherwise_or_outside_the_prefix(internal, aged):
    path = our_path(2 * DAY)
    ulid = path.split("/")[0]
    not_ours = [
        "uploads/notes/readme.txt",
        f"uploads/{ulid}/a/b",
        f"uploads/{ulid.upper()}/orphan.txt",
        f"uploads/{ulid}x/orphan.txt",
        f"uploads/{ulid}/",
        f"uploads/{ulid}/..",
    ]
    outside = [path, f"elsewhere/{path}", f"uploads-old/{path}"]
    aged.put(*not_ours, *outside, age=2 * DAY)
    result = cleanup_unrecorded(aged.config(), internal)
    assert result.exit_code == 0, result.output
    assert aged.keys() == sorted(not_ours + outside)
    assert f"note: {len(not_ours)} object(s) under the prefix are not laid out as" in result.output
    assert "deleted 0 object(s)" in result.output


@AGES_OBJECTS
def test_cleanup_dry_run_reports_an_unrecorded_object_and_keeps_it(internal, aged):
    key = put_old(aged, 2 * DAY)
    result = cleanup_unrecorded(aged.config(), internal, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would delete {key} (uploaded but never confirmed; no pending record, 6 bytes)" in result.output
    assert "would delete 1 object(s), would free 6 bytes" in result.output
    assert aged.keys() == [key]


@AGES_OBJECTS
def test_cleanup_dry_run_reports_an_expired_pending_object_once(internal, aged):
    key = put_old(aged, 2 * DAY)
    path = key.removeprefix("uploads/")
    with sqlite3.connect(internal) as db:
        add_pending(db, "df-" + path.split("/")[0], path, time.time() - DAY)
    result = cleanup_unrecorded(aged.config(), internal, "--dry-run")
    assert result.output.count(path) == 1
    assert "would delete 1 object(s), would free 6 bytes" in result.output


def test_file_id_for_path_recognises_only_the_upload_layout():
    file_id = keys.new_file_id()
    assert keys.file_id_for_path(keys.path_for(file_id, "report.pdf")) == file_id
    ulid = file_id.removeprefix("df-")
    for path in (
        f"{ulid}/a/b",
        f"{ulid.upper()}/x",
        f"{ulid}/",
        f"x{ulid}/x",
        "notes/readme.txt",
        "8" + ulid[1:] + "/x",
        f"{ulid}/.",
        f"{ulid}/..",
        f"{ulid}/...",
    ):
        assert keys.file_id_for_path(path) is None


def test_file_id_created_at_is_the_ulids_time():
    made = ULID.from_timestamp(1_700_000_000.5)
    assert keys.file_id_created_at("df-" + str(made).lower()) == 1_700_000_000.5


# --- secrets ---------------------------------------------------------------


@pytest.mark.store("permissive", reason="signs with made-up keys the store must not check")
def test_no_command_prints_a_secret(tmp_path, s3_server, bucket_name, broker):
    server_keys = [s3_server.secret_access_key, s3_server.access_key_id]
    secrets = {
        "access_key_id": "AKIDLEAKCHECK1111",
        "secret_access_key": "SECRETLEAKCHECK2222",
        "session_token": "TOKENLEAKCHECK3333",
    }
    static = write_config(
        tmp_path,
        s3_server.source_config(bucket_name, **{**secrets, "secret_access_key": {"$env": "LEAK_SECRET"}}),
    )
    env = {"LEAK_SECRET": secrets["secret_access_key"]}
    brokered_secret = "right-broker-secret"
    brokered = write_config(
        tmp_path, broker_source_config(broker, s3_server, brokered_secret), "brokered.json"
    )
    outputs = []
    for path in (static, brokered):
        for args in (
            ["sources"],
            ["sources", "--json"],
            ["cors", SOURCE, "--origin", ORIGIN],
            ["cors", SOURCE, "--origin", ORIGIN, "--dry-run"],
            ["cors", SOURCE, "--origin", ORIGIN, "--apply"],
            ["doctor", "--origin", ORIGIN],
            ["cleanup", "--dry-run"],
            ["cleanup"],
            ["cleanup", "--lifecycle", "--dry-run"],
        ):
            outputs.append(files_s3(*args, "-c", path, env=env).output)
    text = "\n".join(outputs)
    assert "[PASS] presign" in text  # the commands did reach S3 and sign URLs
    for value in [*secrets.values(), brokered_secret, "broker-session-token", *server_keys]:
        assert value not in text
