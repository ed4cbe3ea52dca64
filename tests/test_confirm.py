"""The confirm step enforces on its own what the policy asks of S3, because
moto (and some S3-compatible stores) enforce none of it.

A POST that breaks its policy has two outcomes, each tested on the store that
gives it: an enforcing store (LocalStack, AWS) refuses it and nothing lands; a
permissive one (moto) takes it, and then confirm refuses and deletes it.
"""

import time

import httpx
import pytest

from datasette_files_s3 import cleanup, files_bridge, tickets
from tests.helpers import actor_cookies, complete, post_form, post_to_bucket, prepare, upload


async def registered_ids(ds) -> list[str]:
    rows = await ds.get_internal_database().execute("select id from datasette_files")
    return [row["id"] for row in rows.rows]


async def prepared(ds, cookies, **body):
    response = await prepare(ds, cookies, **body)
    assert response.status_code == 200, response.text
    return response.json()


LETS_IT_THROUGH = pytest.mark.store(
    "permissive", reason="the store must take the POST for confirm to judge it"
)


@LETS_IT_THROUGH
async def test_complete_rejects_size_mismatch_and_deletes_object(ds, bucket):
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, size=10)
    post_to_bucket(data, b"this is far more than ten bytes")  # moto accepts it
    response = await complete(ds, cookies, data["upload_token"])
    assert response.status_code == 400
    assert response.json()["ok"] is False
    assert "31 bytes but 10 were declared" in response.json()["errors"][0]
    assert data["upload_fields"]["key"] not in bucket.keys(bucket.prefix)
    assert await registered_ids(ds) == []


@LETS_IT_THROUGH
async def test_complete_rejects_content_type_mismatch(ds, bucket):
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, size=4, content_type="image/png")
    fields = {**data["upload_fields"], "Content-Type": "text/html"}
    post_to_bucket({**data, "upload_fields": fields}, b"<b/>", content_type="text/html")
    response = await complete(ds, cookies, data["upload_token"])
    assert response.status_code == 400
    assert "content type text/html but image/png was declared" in response.json()["errors"][0]
    assert await registered_ids(ds) == []
    assert bucket.keys(bucket.prefix) == []


@pytest.mark.store("enforcing")
async def test_store_refuses_a_post_over_the_declared_size(ds, bucket):
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, size=10)
    refused = post_form(data, b"this is far more than ten bytes")
    assert refused.status_code == 400 and "<Code>EntityTooLarge</Code>" in refused.text
    assert bucket.keys(bucket.prefix) == []
    response = await complete(ds, cookies, data["upload_token"])
    assert response.status_code == 400
    assert "No file has been uploaded for this token yet" in response.json()["errors"][0]
    assert await registered_ids(ds) == []


@pytest.mark.store("enforcing")
async def test_store_refuses_a_post_of_another_content_type(ds, bucket):
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, size=4, content_type="image/png")
    fields = {**data["upload_fields"], "Content-Type": "text/html"}
    refused = post_form({**data, "upload_fields": fields}, b"<b/>", content_type="text/html")
    assert refused.status_code == 403 and "<Code>AccessDenied</Code>" in refused.text
    assert bucket.keys(bucket.prefix) == []
    assert (await complete(ds, cookies, data["upload_token"])).status_code == 400
    assert await registered_ids(ds) == []


def to_another_key(data: dict) -> tuple[dict, str]:
    """The prepared form with its key changed to a sibling the policy did not sign; and that key."""
    other = data["upload_fields"]["key"].rsplit("/", 1)[0] + "/overwritten.txt"
    return {**data, "upload_fields": {**data["upload_fields"], "key": other}}, other


@pytest.mark.store("enforcing")
async def test_store_refuses_a_post_to_a_key_the_policy_did_not_sign(ds, bucket):
    data = await prepared(ds, actor_cookies(ds), size=3)
    lying, other = to_another_key(data)
    refused = post_form(lying, b"abc")
    assert refused.status_code == 403 and "<Code>AccessDenied</Code>" in refused.text
    assert bucket.keys(bucket.prefix) == []


@LETS_IT_THROUGH
async def test_a_post_to_another_key_lands_where_confirm_never_looks(ds, bucket):
    """What doctor's policy warning is about: on a store that ignores the policy,
    the form can write any key, and confirm, which checks only the signed key,
    never sees it."""
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, size=3)
    lying, other = to_another_key(data)
    post_to_bucket(lying, b"abc")
    assert bucket.keys(bucket.prefix) == [other]
    response = await complete(ds, cookies, data["upload_token"])
    assert response.status_code == 400
    assert "No file has been uploaded for this token yet" in response.json()["errors"][0]
    assert await registered_ids(ds) == []


async def test_complete_before_upload_says_so(ds, bucket):
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, size=3)
    response = await complete(ds, cookies, data["upload_token"])
    assert response.status_code == 400
    assert "No file has been uploaded for this token yet" in response.json()["errors"][0]
    # and it still works once uploaded
    post_to_bucket(data, b"abc")
    assert (await complete(ds, cookies, data["upload_token"])).status_code == 201


async def test_complete_twice_is_refused_naming_the_file(ds, bucket):
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, size=3)
    post_to_bucket(data, b"abc")
    first = await complete(ds, cookies, data["upload_token"])
    assert first.status_code == 201
    again = await complete(ds, cookies, data["upload_token"])
    assert again.status_code == 409
    body = again.json()
    assert body["ok"] is False
    assert "already been completed" in body["errors"][0]
    # The file, for an uploader whose first answer was lost on the way.
    assert body["file"] == first.json()["file"]
    assert len(await registered_ids(ds)) == 1


async def uploaded_and_deleted(ds, cookies) -> tuple[dict, str]:
    """Prepare, upload and complete a file, then delete it through datasette-files'
    delete endpoint: returns (the prepare answer, the file id)."""
    data = await prepared(ds, cookies, size=3)
    post_to_bucket(data, b"abc")
    file_id = (await complete(ds, cookies, data["upload_token"])).json()["file"]["id"]
    deleted = await ds.client.post(f"/-/files/{file_id}/-/delete", cookies=cookies)
    assert deleted.status_code == 200, deleted.text
    return data, file_id


async def test_complete_again_after_the_file_was_deleted_registers_nothing(ds, bucket):
    cookies = actor_cookies(ds)
    data, _ = await uploaded_and_deleted(ds, cookies)
    again = await complete(ds, cookies, data["upload_token"])
    assert again.status_code == 409
    assert "its file has since been deleted" in again.json()["errors"][0]
    assert "file" not in again.json()
    assert await registered_ids(ds) == []


async def test_deleted_file_cannot_come_back_with_the_same_policy_and_token(ds, bucket):
    """The uploader POSTs the still-valid policy again after a moderator deleted
    the file: the token has confirmed once and is refused, and the copy is deleted."""
    cookies = actor_cookies(ds)
    data, _ = await uploaded_and_deleted(ds, cookies)
    key = data["upload_fields"]["key"]
    post_to_bucket(data, b"abc")
    assert key in bucket.keys(bucket.prefix)
    again = await complete(ds, cookies, data["upload_token"])
    assert again.status_code == 409, again.text
    assert again.json()["ok"] is False
    assert await registered_ids(ds) == []
    assert key not in bucket.keys(bucket.prefix)


async def test_cleanup_deletes_a_copy_sent_again_after_the_refusal(ds, bucket):
    cookies = actor_cookies(ds)
    data, _ = await uploaded_and_deleted(ds, cookies)
    post_to_bucket(data, b"abc")  # and never completed
    result = await cleanup.run_cleanup(files_bridge.storage_for("s3files"), ds, 0, False, time.time())
    key = data["upload_fields"]["key"]
    assert [(a.kind, a.key, a.reason) for a in result.actions] == [
        ("delete", key, "sent again after its file was deleted")
    ]
    assert bucket.keys(bucket.prefix) == []
    # The token still cannot confirm: its completed row outlives the token.
    assert (await complete(ds, cookies, data["upload_token"])).status_code == 409


async def completed_rows(ds) -> list[str]:
    rows = await ds.get_internal_database().execute("select file_id from datasette_files_s3_completed")
    return [row["file_id"] for row in rows.rows]


async def test_completed_rows_are_forgotten_once_their_token_has_expired(ds, bucket):
    cookies = actor_cookies(ds)
    kept = (await upload(ds, cookies, b"abc"))["file"]["id"]
    deleted_data, deleted = await uploaded_and_deleted(ds, cookies)
    await ds.get_internal_database().execute_write(
        "update datasette_files_s3_completed set forget_after = ?", [time.time() - 1]
    )
    newest = (await upload(ds, cookies, b"def"))["file"]["id"]
    # A registered file's row goes with the next registration; a deleted file's
    # row waits for cleanup, which checks its key first.
    assert sorted(await completed_rows(ds)) == sorted([deleted, newest])
    assert kept not in await completed_rows(ds)
    await cleanup.run_cleanup(files_bridge.storage_for("s3files"), ds, 0, False, time.time())
    assert await completed_rows(ds) == [newest]


async def test_another_actor_cannot_complete(ds, bucket):
    data = await prepared(ds, actor_cookies(ds, "alice"), size=3)
    post_to_bucket(data, b"abc")
    response = await complete(ds, actor_cookies(ds, "mallory"), data["upload_token"])
    assert response.status_code == 403
    assert "another user" in response.json()["errors"][0]
    assert await registered_ids(ds) == []


async def test_tampered_token_is_refused(ds, bucket):
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, size=3)
    post_to_bucket(data, b"abc")
    token = data["upload_token"]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    response = await complete(ds, cookies, tampered)
    assert response.status_code == 400
    assert "not valid" in response.json()["errors"][0]
    assert await registered_ids(ds) == []


async def test_token_signed_with_other_secret_is_refused(ds, bucket, make_datasette):
    other = await make_datasette(
        {"s3files": {"storage": "s3", "config": bucket.source_config()}}, secret="other"
    )
    data = await prepared(other, actor_cookies(other), size=3)
    post_to_bucket(data, b"abc")
    response = await complete(ds, actor_cookies(ds), data["upload_token"])
    assert response.status_code == 400
    assert await registered_ids(ds) == []


async def test_token_for_another_source_is_refused(make_datasette, bucket):
    ds = await make_datasette(
        {
            "one": {"storage": "s3", "config": bucket.source_config(prefix="one")},
            "two": {"storage": "s3", "config": bucket.source_config(prefix="two")},
        }
    )
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, source="one", size=3)
    post_to_bucket(data, b"abc")
    response = await complete(ds, cookies, data["upload_token"], source="two")
    assert response.status_code == 400
    assert "belongs to source 'one', not 'two'" in response.json()["errors"][0]


async def test_token_confirms_on_another_process_sharing_the_secret(ds, bucket, make_datasette):
    """No state only in one process's memory: a second Datasette with the same
    secret (and its own, empty internal database) confirms the upload."""
    data = await prepared(ds, actor_cookies(ds), size=3)
    post_to_bucket(data, b"abc")
    second = await make_datasette({"s3files": {"storage": "s3", "config": bucket.source_config()}})
    response = await complete(second, actor_cookies(second), data["upload_token"])
    assert response.status_code == 201, response.text


async def test_object_written_after_expiry_is_rejected(ds, bucket):
    """Forge a ticket (with the real secret) whose permission expired long ago."""
    storage_source = "s3files"
    ticket = tickets.UploadTicket(
        source=storage_source,
        file_id="df-01jexpiredexpiredexpired0",
        path="01jexpiredexpiredexpired0/late.txt",
        filename="late.txt",
        content_type="text/plain",
        size=3,
        actor_id="alice",
        expires_at=time.time() - 600,
    )
    bucket.client.put_object(
        Bucket=bucket.name, Key=bucket.prefix + ticket.path, Body=b"abc", ContentType="text/plain"
    )
    response = await complete(ds, actor_cookies(ds), tickets.sign_ticket(ds, ticket))
    assert response.status_code == 400
    assert "after the upload permission expired" in response.json()["errors"][0]
    assert await registered_ids(ds) == []


async def test_token_past_confirm_window_is_refused(ds, bucket):
    ticket = tickets.UploadTicket(
        source="s3files",
        file_id="df-01joldoldoldoldoldoldold00",
        path="01joldoldoldoldoldoldold00/old.txt",
        filename="old.txt",
        content_type="text/plain",
        size=3,
        actor_id="alice",
        expires_at=time.time() - tickets.CONFIRM_GRACE_SECONDS - 10,
    )
    response = await complete(ds, actor_cookies(ds), tickets.sign_ticket(ds, ticket))
    assert response.status_code == 400
    assert "expired" in response.json()["errors"][0]


async def test_pending_row_recorded_at_prepare_and_removed_at_complete(ds, bucket):
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, size=3)
    db = ds.get_internal_database()
    pending = (await db.execute("select source, path, size from datasette_files_s3_pending")).rows
    assert [(r["source"], r["size"]) for r in pending] == [("s3files", 3)]
    assert bucket.prefix + pending[0]["path"] == data["upload_fields"]["key"]
    post_to_bucket(data, b"abc")
    await complete(ds, cookies, data["upload_token"])
    assert (await db.execute("select count(*) from datasette_files_s3_pending")).single_value() == 0


async def test_download_of_html_is_an_attachment_never_inline(ds, bucket):
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, filename="page.html", content_type="text/html", size=13)
    post_to_bucket(data, b"<script></script>"[:13], filename="page.html", content_type="text/html")
    file = (await complete(ds, cookies, data["upload_token"])).json()["file"]
    redirect = await ds.client.get(file["download_url"])
    fetched = httpx.get(redirect.headers["location"])
    assert fetched.headers["content-disposition"].startswith("attachment;")
    assert fetched.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "config, body, message",
    [
        (
            {"max_file_size": 100},
            {"size": 101},
            "File is too large: 101 B, this source accepts at most 100 B",
        ),
        ({"allowed_content_types": ["image/*"]}, {"content_type": "text/plain", "size": 5}, "not allowed"),
    ],
)
async def test_prepare_enforces_source_limits_before_signing(make_datasette, bucket, config, body, message):
    ds = await make_datasette({"s3files": {"storage": "s3", "config": bucket.source_config(**config)}})
    response = await prepare(ds, actor_cookies(ds), **body)
    assert response.status_code == 400
    assert message in response.json()["errors"][0]
    assert "upload_fields" not in response.json()
    count = (
        await ds.get_internal_database().execute("select count(*) from datasette_files_s3_pending")
    ).single_value()
    assert count == 0


async def test_allowed_content_types_accepts_matching_pattern(make_datasette, bucket):
    ds = await make_datasette(
        {"s3files": {"storage": "s3", "config": bucket.source_config(allowed_content_types=["image/*"])}}
    )
    response = await prepare(ds, actor_cookies(ds), filename="a.png", content_type="image/png", size=5)
    assert response.status_code == 200


async def test_two_sources_with_identical_config_each_know_their_name(make_datasette, bucket):
    ds = await make_datasette(
        {
            "first": {"storage": "s3", "config": bucket.source_config()},
            "second": {"storage": "s3", "config": bucket.source_config()},
        }
    )
    cookies = actor_cookies(ds)
    data = await prepared(ds, cookies, source="second", size=3)
    post_to_bucket(data, b"abc")
    response = await complete(ds, cookies, data["upload_token"], source="second")
    assert response.status_code == 201, response.text
    assert response.json()["file"]["source_slug"] == "second"
