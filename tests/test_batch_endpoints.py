"""prepare-batch and complete-batch: several small files in one request each,
each file checked, signed, verified and registered as prepare and complete do
it for one, and answered on its own (one file's refusal fails no other).

Against a real Datasette and this run's S3 server; the store-enforcement tests
need `--s3=localstack` (an enforcing, checksum-checking store).
"""

import base64
import hashlib

import pytest
import pytest_asyncio

from datasette_files_s3 import batch_views
from tests.helpers import actor_cookies, complete, post_form, post_to_bucket, prepare

UPLOADER = "/-/files-s3/upload/{source}/-/"


def sha256_b64(content: bytes) -> str:
    return base64.b64encode(hashlib.sha256(content).digest()).decode()


def describe(name: str, content: bytes, **extra) -> dict:
    return {"filename": name, "content_type": "text/plain", "size": len(content), **extra}


async def batch(ds, step: str, files, who="alice", source="s3files", **kwargs):
    """POST a batch to prepare-batch or complete-batch; the httpx response."""
    cookies = actor_cookies(ds, who) if who else {}
    return await ds.client.post(
        UPLOADER.format(source=source) + f"{step}-batch", json={"files": files}, cookies=cookies, **kwargs
    )


def answers(response) -> list[dict]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    return body["files"]


async def registered(ds) -> list[str]:
    rows = await ds.get_internal_database().execute("select filename from datasette_files order by filename")
    return [row["filename"] for row in rows]


CONTENTS = {f"f{n}.txt": f"file number {n}\n".encode() * (n + 1) for n in range(5)}


async def test_five_files_prepared_sent_and_completed_in_two_requests(ds, bucket):
    files = [describe(name, content, sha256=sha256_b64(content)) for name, content in CONTENTS.items()]
    prepared = answers(await batch(ds, "prepare", files))
    assert [p["ok"] for p in prepared] == [True] * 5
    for p, content in zip(prepared, CONTENTS.values(), strict=True):
        post_to_bucket(p, content)
    completed = answers(await batch(ds, "complete", [{"upload_token": p["upload_token"]} for p in prepared]))
    # In the order sent, each with the SHA-256 the store reported (or Datasette read back).
    assert [c["file"]["filename"] for c in completed] == list(CONTENTS)
    assert [c["file"]["content_hash"] for c in completed] == [
        "sha256:" + hashlib.sha256(content).hexdigest() for content in CONTENTS.values()
    ]
    assert await registered(ds) == sorted(CONTENTS)
    assert sorted(bucket.get(key) for key in bucket.keys(bucket.prefix)) == sorted(CONTENTS.values())


async def test_one_refused_file_does_not_fail_the_others(ds, bucket):
    files = [describe("good.txt", b"abc"), describe("../bad", b"abc"), "not an object", {"filename": "x.txt"}]
    first, bad_name, not_object, no_size = answers(await batch(ds, "prepare", files))
    assert first["ok"] is True and first["upload_token"]
    assert bad_name == {**bad_name, "ok": False, "status": 400, "retryable": False}
    assert "filename must be a plain name" in bad_name["errors"][0]
    assert not_object["status"] == 400 and not_object["errors"] == ["files[2] must be a JSON object"]
    assert no_size["status"] == 400 and "size is required" in no_size["errors"][0]


async def test_each_token_completes_once_and_only_for_its_actor(ds, bucket):
    prepared = answers(await batch(ds, "prepare", [describe(n, c) for n, c in list(CONTENTS.items())[:3]]))
    sent, unsent, bobs = prepared
    post_to_bucket(sent, CONTENTS["f0.txt"])
    post_to_bucket(bobs, CONTENTS["f2.txt"])
    first = answers(
        await batch(ds, "complete", [{"upload_token": p["upload_token"]} for p in (sent, unsent)])
    )
    assert first[0]["ok"] is True
    assert (
        first[1]["status"] == 400 and "No file has been uploaded for this token yet" in first[1]["errors"][0]
    )
    again = answers(
        await batch(
            ds,
            "complete",
            [{"upload_token": sent["upload_token"]}, {"upload_token": bobs["upload_token"]}, {}],
            who="bob",
        )
    )
    # The first is alice's own token, refused for bob like any other actor's.
    assert [a["status"] for a in again] == [403, 403, 400]
    assert "only they can complete it" in again[0]["errors"][0]
    assert "upload_token is required" in again[2]["errors"][0]
    replay = answers(await batch(ds, "complete", [{"upload_token": sent["upload_token"]}]))[0]
    assert replay["status"] == 409 and replay["file"]["id"] == first[0]["file"]["id"]
    assert await registered(ds) == ["f0.txt"]


async def test_a_single_token_and_a_batch_token_are_the_same_token(ds, bucket):
    """A token from prepare-batch completes at the single complete, and the other way round."""
    from_batch = answers(await batch(ds, "prepare", [describe("a.txt", b"abc")]))[0]
    single = (await prepare(ds, actor_cookies(ds), filename="b.txt", size=3)).json()
    post_to_bucket(from_batch, b"abc")
    post_to_bucket(single, b"abc", filename="b.txt")
    assert (await complete(ds, actor_cookies(ds), from_batch["upload_token"])).status_code == 201
    assert answers(await batch(ds, "complete", [{"upload_token": single["upload_token"]}]))[0]["ok"] is True


@pytest_asyncio.fixture
async def limited(make_datasette, bucket):
    config = bucket.source_config(max_pending_uploads=3)
    return await make_datasette({"s3files": {"storage": "s3", "config": config}})


async def test_a_batch_is_held_to_the_actors_limit_file_by_file(limited):
    files = [describe(f"f{n}.txt", b"abc") for n in range(5)]
    results = answers(await batch(limited, "prepare", files))
    assert sorted(r["ok"] for r in results) == [False, False, True, True, True]
    for refused in (r for r in results if not r["ok"]):
        assert refused["status"] == 429 and refused["retryable"] is True
        assert 1 <= refused["retry_after"] <= 900
        assert "You already have 3 uploads prepared but not completed" in refused["errors"][0]
    # Another actor has places of their own.
    assert answers(await batch(limited, "prepare", files[:1], who="bob"))[0]["ok"] is True


async def test_the_batch_size_is_capped(ds, bucket):
    files = [describe(f"f{n}.txt", b"abc") for n in range(batch_views.MAX_BATCH_FILES + 1)]
    response = await batch(ds, "prepare", files)
    assert response.status_code == 400
    assert "A batch holds at most 50 files and this one has 51" in response.json()["errors"][0]
    pending = await ds.get_internal_database().execute("select count(*) from datasette_files_s3_pending")
    assert pending.single_value() == 0


@pytest.mark.parametrize("step", ["prepare", "complete"])
@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"not json", 400, "Body must be valid JSON"),
        (b"[1, 2]", 400, "Body must be a JSON object"),
        (b'{"files": {"filename": "a.txt"}}', 400, "files is required: a list"),
        (b'{"files": []}', 400, "files is required: a list"),
        (b'{"files": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", 400, "Body is nested too deeply"),
        (b'{"files": ["' + b"x" * batch_views.MAX_BATCH_BODY + b'"]}', 413, "Request body is too large"),
    ],
    ids=["not-json", "not-object", "files-not-list", "files-empty", "deep", "huge"],
)
async def test_hostile_bodies_get_a_json_4xx(ds, bucket, step, body, status, message):
    response = await ds.client.post(
        UPLOADER.format(source="s3files") + f"{step}-batch",
        content=body,
        headers={"content-type": "application/json"},
        cookies=actor_cookies(ds),
    )
    assert response.status_code == status, response.text
    assert response.json()["ok"] is False and message in response.json()["errors"][0]


@pytest.mark.parametrize("step", ["prepare", "complete"])
async def test_who_may_use_a_batch(ds, bucket, step):
    anonymous = await batch(ds, step, [describe("a.txt", b"abc")], who=None)
    assert anonymous.status_code == 403 and "files-upload" in anonymous.json()["errors"][0]
    unknown = await batch(ds, step, [describe("a.txt", b"abc")], source="nowhere")
    assert unknown.status_code == 404 and unknown.json()["ok"] is False
    got = await ds.client.get(UPLOADER.format(source="s3files") + f"{step}-batch", cookies=actor_cookies(ds))
    assert got.status_code == 405
    form = await ds.client.post(
        UPLOADER.format(source="s3files") + f"{step}-batch", data={"files": "x"}, cookies=actor_cookies(ds)
    )
    assert form.status_code == 400 and "Content-Type: application/json" in form.json()["errors"][0]


async def test_a_proxy_mode_source_refuses_batches(make_datasette, bucket):
    ds = await make_datasette(
        {"s3files": {"storage": "s3", "config": bucket.source_config(direct_uploads=False)}}
    )
    response = await batch(ds, "prepare", [describe("a.txt", b"abc")])
    assert response.status_code == 400
    assert "direct_uploads: false" in response.json()["errors"][0]


# --- what the store enforces on batch-signed uploads (--s3=localstack) ---------------


@pytest.mark.store("enforcing")
async def test_store_refuses_more_bytes_than_a_batch_file_declared(ds, bucket):
    prepared = answers(await batch(ds, "prepare", [describe("a.txt", b"abc"), describe("b.txt", b"abc")]))
    refused = post_form(prepared[0], b"far more than three bytes")
    assert refused.status_code == 400 and "<Code>EntityTooLarge</Code>" in refused.text
    post_to_bucket(prepared[1], b"abc", filename="b.txt")
    completed = answers(await batch(ds, "complete", [{"upload_token": p["upload_token"]} for p in prepared]))
    assert completed[0]["status"] == 400 and completed[1]["ok"] is True
    assert await registered(ds) == ["b.txt"]


@pytest.mark.store("checks-checksums")
async def test_store_refuses_other_bytes_than_a_batch_file_signed_for(ds, bucket):
    content = b"the bytes that were hashed"
    other = b"other bytes, the same size"[: len(content)].ljust(len(content))
    prepared = answers(await batch(ds, "prepare", [describe("a.txt", content, sha256=sha256_b64(content))]))
    refused = post_form(prepared[0], other)
    assert refused.status_code == 400, refused.text
    assert bucket.keys(bucket.prefix) == []
