"""Pending-upload rows and registrations: pending rows written before a token
is handed out, both in shared writes under load, and a failed write refuses
the upload instead of signing it."""

import asyncio
import json
import sqlite3

import httpx
from datasette.database import QueryInterrupted
from datasette.utils.asgi import Request

from datasette_files_s3 import database, files_bridge, responses, tickets
from datasette_files_s3.errors import AlreadyCompleted
from datasette_files_s3.registration import register
from tests.helpers import actor_cookies, complete, post_to_bucket, prepare

PENDING = database.PENDING_TABLE


async def pending_ids(ds) -> set[str]:
    rows = await ds.get_internal_database().execute(f"SELECT file_id FROM {PENDING}")
    return {row["file_id"] for row in rows.rows}


def ticket(n: int) -> tickets.UploadTicket:
    upload = tickets.UploadRequest(filename=f"f{n}.bin", content_type="application/octet-stream", size=n + 1)
    return tickets.new_ticket("s3files", upload, "alice", expires_at=1e10)


async def test_concurrent_records_share_one_write_and_every_row_lands(ds):
    internal = ds.get_internal_database()
    trips = counted_write_trips(ds)
    tickets = [ticket(n) for n in range(20)]
    await asyncio.gather(*(database.record_pending(ds, t) for t in tickets))
    assert await pending_ids(ds) == {t.file_id for t in tickets}
    # All twenty were queued before the first write started, so one trip carried them.
    assert len(trips) == 1
    row = dict(
        (await internal.execute(f"SELECT * FROM {PENDING} WHERE file_id = ?", [tickets[7].file_id])).first()
    )
    assert (row["path"], row["size"], row["actor_id"]) == (tickets[7].path, 8, "alice")


def counted_write_trips(ds) -> list:
    """The trips to the internal database's write thread from now on. A spy, not
    a mock: every write still goes to the real write thread."""
    internal = ds.get_internal_database()
    trips = []
    real_write = internal.execute_write_fn

    async def counting_write(fn, *args, **kwargs):
        trips.append(fn)
        return await real_write(fn, *args, **kwargs)

    internal.execute_write_fn = counting_write
    return trips


def registration(ds, t: tickets.UploadTicket):
    """Register a ticket's file, as confirm does once its object has been checked."""
    return register(ds, files_bridge.storage_for(t.source), t, {"ETag": '"etag"'}, None)


async def test_concurrent_registrations_share_one_write_and_every_file_lands(ds):
    await files_bridge.storage_for("s3files").connection()  # built once, in a thread
    trips = counted_write_trips(ds)
    tickets = [ticket(n) for n in range(20)]
    await asyncio.gather(*(registration(ds, t) for t in tickets))
    assert sorted(await registered_ids(ds)) == sorted(t.file_id for t in tickets)
    assert len(trips) == 1


async def test_a_registration_refused_in_a_shared_write_is_undone_alone(ds):
    """Each write in a shared transaction has its own savepoint. An id completed
    before and deleted since fails at its second statement (AlreadyCompleted,
    a 409): its file row, already inserted, is undone with it, and
    the others land."""
    first, deleted, third = (ticket(n) for n in range(3))
    await registration(ds, deleted)
    await ds.get_internal_database().execute_write(
        "DELETE FROM datasette_files WHERE id = ?", [deleted.file_id]
    )
    outcomes = await asyncio.gather(
        *(registration(ds, t) for t in (first, deleted, third)), return_exceptions=True
    )
    assert [outcomes[0]["id"], outcomes[2]["id"]] == [first.file_id, third.file_id]
    assert isinstance(outcomes[1], AlreadyCompleted)
    assert sorted(await registered_ids(ds)) == sorted([first.file_id, third.file_id])


async def test_complete_reads_the_file_record_in_its_registering_write(ds, bucket, monkeypatch):
    """The record complete answers with comes from the write that registered it,
    not from a read of its own: one trip to a database thread fewer per file."""
    reads = []
    real_file_record = files_bridge.file_record

    async def counting_file_record(datasette, file_id):
        # A spy, not a mock: the real read still runs.
        reads.append(file_id)
        return await real_file_record(datasette, file_id)

    monkeypatch.setattr(files_bridge, "file_record", counting_file_record)
    cookies = actor_cookies(ds)
    prepared = (await prepare(ds, cookies, size=5)).json()
    post_to_bucket(prepared, b"hello")
    response = await complete(ds, cookies, prepared["upload_token"])
    assert response.status_code == 201, response.text
    assert reads == []
    file = response.json()["file"]
    assert file == files_bridge.file_json(ds, await real_file_record(ds, file["id"]))


async def test_records_made_one_after_another_each_land(ds):
    tickets = [ticket(n) for n in range(3)]
    for t in tickets:
        await database.record_pending(ds, t)
    assert await pending_ids(ds) == {t.file_id for t in tickets}


async def test_concurrent_prepares_each_record_the_file_their_token_names(ds):
    cookies = actor_cookies(ds)
    responses = await asyncio.gather(
        *(prepare(ds, cookies, filename=f"n{n}.txt", size=n + 1) for n in range(12))
    )
    assert [r.status_code for r in responses] == [200] * 12
    signed = {tickets.read_ticket(ds, r.json()["upload_token"]).file_id for r in responses}
    assert len(signed) == 12
    assert await pending_ids(ds) == signed


async def test_a_failed_pending_write_refuses_the_upload_with_503(ds):
    await ds.get_internal_database().execute_write(f"DROP TABLE {PENDING}")
    cookies = actor_cookies(ds)
    response = await prepare(ds, cookies, size=3)
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False and "upload_token" not in body
    assert "internal database failed" in body["errors"][0]
    # Once the database is writable again, uploads go on without a restart.
    await database.create_tables(ds)
    assert (await prepare(ds, cookies, size=3)).status_code == 200


async def test_a_failed_pending_write_aborts_the_multipart_upload_it_created(make_datasette, bucket):
    config = bucket.source_config(multipart_threshold="5MiB")
    ds = await make_datasette({"s3files": {"storage": "s3", "config": config}})
    await ds.get_internal_database().execute_write(f"DROP TABLE {PENDING}")
    response = await ds.client.post(
        "/-/files-s3/upload/s3files/-/multipart/create",
        content=json.dumps({"filename": "big.bin", "size": 20 * 1024**2}),
        headers={"content-type": "application/json"},
        cookies=actor_cookies(ds),
    )
    assert response.status_code == 503, response.text
    left = bucket.client.list_multipart_uploads(Bucket=bucket.name, Prefix=bucket.prefix)
    assert left.get("Uploads", []) == []


async def test_a_failed_register_answers_503_and_the_same_token_completes_later(ds, bucket):
    cookies = actor_cookies(ds)
    prepared = (await prepare(ds, cookies, size=5)).json()
    post_to_bucket(prepared, b"hello")
    # The registering transaction fails at its last statement (forgetting the
    # pending row); the reads before it still work.
    await ds.get_internal_database().execute_write(f"DROP TABLE {PENDING}")
    response = await complete(ds, cookies, prepared["upload_token"])
    assert response.status_code == 503, response.text
    assert "internal database failed" in response.json()["errors"][0]
    assert await registered_ids(ds) == []
    await database.create_tables(ds)
    response = await complete(ds, cookies, prepared["upload_token"])
    assert response.status_code == 201, response.text
    assert await registered_ids(ds) == [response.json()["file"]["id"]]


async def test_a_multipart_complete_that_could_not_register_completes_on_retry(make_datasette, bucket):
    """S3 assembled the object before the registration failed: the retry finds
    the upload gone from S3, verifies the object and registers it."""
    config = bucket.source_config(multipart_threshold="5MiB")
    ds = await make_datasette({"s3files": {"storage": "s3", "config": config}})
    cookies = actor_cookies(ds)
    content = b"p" * (5 * 1024**2 + 7)
    token = await multipart_uploaded(ds, cookies, content)
    await ds.get_internal_database().execute_write(f"DROP TABLE {PENDING}")
    response = await multipart_step(ds, cookies, "complete", upload_token=token)
    assert response.status_code == 503, response.text
    await database.create_tables(ds)
    response = await multipart_step(ds, cookies, "complete", upload_token=token)
    assert response.status_code == 201, response.text
    file = response.json()["file"]
    assert await registered_ids(ds) == [file["id"]]
    key = bucket.prefix + tickets.read_ticket(ds, token).path
    assert bucket.get(key) == content
    again = await multipart_step(ds, cookies, "complete", upload_token=token)
    assert again.status_code == 409 and again.json()["file"] == file


async def registered_ids(ds) -> list[str]:
    rows = await ds.get_internal_database().execute("SELECT id FROM datasette_files")
    return [row["id"] for row in rows.rows]


async def multipart_step(ds, cookies, step, **body):
    return await ds.client.post(f"/-/files-s3/upload/s3files/-/multipart/{step}", json=body, cookies=cookies)


async def multipart_uploaded(ds, cookies, content: bytes) -> str:
    """Create a multipart upload, PUT its parts; returns the token, ready to complete."""
    body = {"filename": "big.bin", "content_type": "application/octet-stream", "size": len(content)}
    created = (await multipart_step(ds, cookies, "create", **body)).json()
    numbers = list(range(1, created["part_count"] + 1))
    signed = await multipart_step(
        ds, cookies, "sign", upload_token=created["upload_token"], part_numbers=numbers
    )
    size = created["part_size"]
    for number, url in signed.json()["urls"].items():
        index = int(number) - 1
        httpx.put(url, content=content[index * size : (index + 1) * size], timeout=60).raise_for_status()
    return created["upload_token"]


async def test_a_permission_check_that_cannot_read_the_internal_database_answers_503(
    make_datasette, bucket, tmp_path
):
    """Another process holds the internal database's exclusive lock."""
    internal = tmp_path / "internal.db"
    config = {"s3files": {"storage": "s3", "config": bucket.source_config()}}
    ds = await make_datasette(config, internal=str(internal))
    cookies = actor_cookies(ds)
    assert (await prepare(ds, cookies, size=3)).status_code == 200
    holder = sqlite3.connect(internal, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        response = await prepare(ds, cookies, size=3)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503, response.text
    assert "internal database failed" in response.json()["errors"][0]
    assert (await prepare(ds, cookies, size=3)).status_code == 200


async def test_an_internal_query_past_the_time_limit_answers_503(ds):
    """A fault we cannot produce on demand: Datasette interrupting a permission
    query that waited past sql_time_limit_ms on a loaded machine (seen in CI)."""

    @responses.json_api
    async def view(request, datasette):
        raise QueryInterrupted(sqlite3.OperationalError("interrupted"), "SELECT 1", {})

    response = await view(Request.fake("/-/files/upload/s3files/-/prepare", method="POST"), ds)
    assert response.status == 503
    assert "internal database failed (QueryInterrupted)" in json.loads(response.body)["errors"][0]
