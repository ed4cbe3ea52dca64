"""Pending-upload rows: written before a token is handed out, in shared writes
under load, and a failed write refuses the upload instead of signing it."""

import asyncio
import json

from helpers import actor_cookies, complete, post_to_bucket, prepare

from datasette_files_s3 import database, uploads

PENDING = database.PENDING_TABLE


async def pending_ids(ds) -> set[str]:
    rows = await ds.get_internal_database().execute(f"SELECT file_id FROM {PENDING}")
    return {row["file_id"] for row in rows.rows}


def ticket(n: int) -> uploads.UploadTicket:
    upload = uploads.UploadRequest(filename=f"f{n}.bin", content_type="application/octet-stream", size=n + 1)
    return uploads.new_ticket("s3files", upload, "alice", expires_at=1e10)


async def test_concurrent_records_share_one_write_and_every_row_lands(ds):
    internal = ds.get_internal_database()
    trips = []
    real_write = internal.execute_write_fn

    async def counting_write(fn, *args, **kwargs):
        # A spy, not a mock: the write still goes to the real write thread.
        trips.append(fn)
        return await real_write(fn, *args, **kwargs)

    internal.execute_write_fn = counting_write
    tickets = [ticket(n) for n in range(20)]
    await asyncio.gather(*(database.record_pending(ds, t) for t in tickets))
    assert await pending_ids(ds) == {t.file_id for t in tickets}
    # All twenty were queued before the first write started, so one trip carried them.
    assert len(trips) == 1
    row = dict(
        (await internal.execute(f"SELECT * FROM {PENDING} WHERE file_id = ?", [tickets[7].file_id])).first()
    )
    assert (row["path"], row["size"], row["actor_id"]) == (tickets[7].path, 8, "alice")


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
    signed = {uploads.read_ticket(ds, r.json()["upload_token"]).file_id for r in responses}
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
    internal = ds.get_internal_database()
    # The internal database failing under us: datasette-files' table gone.
    await internal.execute_write("ALTER TABLE datasette_files RENAME TO datasette_files_away")
    response = await complete(ds, cookies, prepared["upload_token"])
    assert response.status_code == 503, response.text
    assert "internal database failed" in response.json()["errors"][0]
    assert await pending_ids(ds) == {uploads.read_ticket(ds, prepared["upload_token"]).file_id}
    await internal.execute_write("ALTER TABLE datasette_files_away RENAME TO datasette_files")
    response = await complete(ds, cookies, prepared["upload_token"])
    assert response.status_code == 201, response.text
