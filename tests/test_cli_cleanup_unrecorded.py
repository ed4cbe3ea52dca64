"""`datasette files-s3 cleanup --unrecorded`: objects laid out as ours that no table
records, deleted only when old enough and nothing could still confirm them."""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from ulid import ULID

from datasette_files_s3 import keys
from tests.cli_support import (
    SOURCE,
    add_pending,
    bucket_keys,
    files_s3,
    write_config,
)
from tests.s3_servers import MotoServer

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
