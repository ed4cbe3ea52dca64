"""Multipart endpoints against this run's S3 server over HTTP, driven as the browser drives them:
create, sign in batches, PUT parts straight to the bucket, complete (or abort, or resume)."""

import hashlib
import hmac
import os
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
import pytest_asyncio

from tests.helpers import actor_cookies

MIB = 1024**2
PART = 5 * MIB
# Three parts at 5 MiB: 5 MiB, 5 MiB and a short last one.
CONTENT = os.urandom(2 * PART + 1234)
BASE = "/-/files-s3/upload/s3files/-/multipart"


@pytest_asyncio.fixture
async def mds(make_datasette, bucket):
    """Datasette whose s3 source sends anything over 5 MiB in 5 MiB parts."""
    config = bucket.source_config(multipart_threshold="5MiB", max_file_size="1GiB")
    return await make_datasette({"s3files": {"storage": "s3", "config": config}})


async def api(ds, step, cookies, **body):
    return await ds.client.post(f"{BASE}/{step}", json=body, cookies=cookies)


async def create(ds, cookies, content=CONTENT, filename="big.bin", **extra):
    response = await api(
        ds,
        cookies=cookies,
        step="create",
        filename=filename,
        content_type="application/octet-stream",
        size=len(content),
        **extra,
    )
    assert response.status_code == 200, response.text
    return response.json()


def part_bytes(content, part_size, number):
    return content[(number - 1) * part_size : number * part_size]


def put_parts(urls: dict, content: bytes, part_size: int, sizes: dict | None = None) -> dict:
    """PUT parts in parallel as the browser does; returns {number: etag}."""

    def put(item):
        number, url = int(item[0]), item[1]
        data = part_bytes(content, part_size, number)
        if sizes and number in sizes:
            data = (
                data[: sizes[number]]
                if sizes[number] <= len(data)
                else data + b"x" * (sizes[number] - len(data))
            )
        response = httpx.put(url, content=data, timeout=60)
        assert response.status_code == 200, response.text
        return number, response.headers["etag"]

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(put, urls.items()))


async def sign(ds, cookies, token, numbers):
    response = await api(ds, "sign", cookies, upload_token=token, part_numbers=numbers)
    assert response.status_code == 200, response.text
    return response.json()["urls"]


async def open_uploads(bucket):
    """Multipart uploads in progress under the test's own prefix (never the whole bucket)."""
    return bucket.multipart_uploads()


async def test_multipart_upload_as_browser_drives_it(mds, bucket):
    cookies = actor_cookies(mds)
    created = await create(mds, cookies)
    assert (created["part_size"], created["part_count"], created["parts"]) == (PART, 3, [])
    token = created["upload_token"]
    urls = {}
    for batch in ([1, 2], [3]):
        urls.update(await sign(mds, cookies, token, batch))
    etags = put_parts(urls, CONTENT, PART)
    listed = (await api(mds, "parts", cookies, upload_token=token)).json()["parts"]
    assert [(p["part_number"], p["size"], p["etag"]) for p in listed] == [
        (n, len(part_bytes(CONTENT, PART, n)), etags[n].strip('"')) for n in (1, 2, 3)
    ]
    completed = await api(mds, "complete", cookies, upload_token=token)
    assert completed.status_code == 201, completed.text
    file = completed.json()["file"]
    assert file["size"] == len(CONTENT) and file["filename"] == "big.bin"
    key = bucket.prefix + file["id"].removeprefix("df-") + "/big.bin"
    assert bucket.get(key) == CONTENT
    assert bucket.client.head_object(Bucket=bucket.name, Key=key)["ETag"].strip('"').endswith("-3")
    assert await open_uploads(bucket) == []
    again = await api(mds, "complete", cookies, upload_token=token)
    assert again.status_code == 409 and again.json()["ok"] is False
    assert again.json()["file"] == file


def signature_accepts(url: str, secret: str, content_length: int) -> bool:
    """Check a presigned PUT as a store that verifies SigV4 would, for a body of
    `content_length` bytes. moto checks no signatures, so the test does it here."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = query.pop("X-Amz-Signature")
    headers = {"content-length": str(content_length), "host": parts.netloc}
    signed = query["X-Amz-SignedHeaders"].split(";")
    canonical_request = "\n".join(
        [
            "PUT",
            parts.path,
            "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())),
            "".join(f"{name}:{headers[name]}\n" for name in signed),
            ";".join(signed),
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = query["X-Amz-Credential"].split("/", 1)[1]
    date, region, service, _ = scope.split("/")
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            query["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for step in (date, region, service, "aws4_request"):
        key = hmac.new(key, step.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


async def test_part_urls_are_signed_for_each_parts_planned_length(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies))["upload_token"]
    urls = await sign(mds, cookies, token, [1, 2, 3])
    secret = bucket.server.secret_access_key
    for number, length in ((1, PART), (2, PART), (3, 1234)):
        url = urls[str(number)]
        query = dict(parse_qsl(urlsplit(url).query))
        assert query["X-Amz-SignedHeaders"].split(";") == ["content-length", "host"]
        assert signature_accepts(url, secret, length)
        assert not signature_accepts(url, secret, length + 1)
        assert not signature_accepts(url, secret, 20 * MIB)


async def assert_rejected_and_cleaned(ds, bucket, cookies, token, message):
    response = await api(ds, "complete", cookies, upload_token=token)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["ok"] is False
    assert any(message in e for e in body["errors"]), body
    assert await open_uploads(bucket) == []
    assert bucket.keys(bucket.prefix) == []
    assert (await ds.client.get("/-/files/search.json?q=big")).json()["files"] == []


async def test_complete_with_missing_part_aborts_and_registers_nothing(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies))["upload_token"]
    put_parts(await sign(mds, cookies, token, [1, 3]), CONTENT, PART)
    await assert_rejected_and_cleaned(mds, bucket, cookies, token, "parts have not been uploaded: 2")


@pytest.mark.store("permissive", reason="the store must take the short part for complete to judge it")
async def test_complete_with_wrong_part_size_aborts(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies))["upload_token"]
    put_parts(await sign(mds, cookies, token, [1, 2, 3]), CONTENT, PART, sizes={3: 1000})
    await assert_rejected_and_cleaned(mds, bucket, cookies, token, "Part 3 is 1000 bytes but should be 1234")


@pytest.mark.store("enforcing")
async def test_store_refuses_a_part_of_another_length_than_signed(mds, bucket):
    """The part URL signs Content-Length, so an enforcing store refuses a short part itself."""
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies))["upload_token"]
    urls = await sign(mds, cookies, token, [3])
    refused = httpx.put(urls["3"], content=part_bytes(CONTENT, PART, 3)[:1000], timeout=60)
    assert refused.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in refused.text
    listed = (await api(mds, "parts", cookies, upload_token=token)).json()["parts"]
    assert listed == []


async def test_complete_with_part_the_plan_never_had_aborts(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies))["upload_token"]
    put_parts(await sign(mds, cookies, token, [1, 2, 3]), CONTENT, PART)
    # Our sign endpoint refuses part 4, so a rogue client would need its own
    # credentials: write it with boto3 against the same upload id.
    upload = (await open_uploads(bucket))[0]
    bucket.client.upload_part(
        Bucket=bucket.name, Key=upload["Key"], UploadId=upload["UploadId"], PartNumber=4, Body=b"extra"
    )
    await assert_rejected_and_cleaned(
        mds, bucket, cookies, token, "Part 4 was uploaded but the plan has only 3"
    )


async def test_sign_refuses_part_outside_plan(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies))["upload_token"]
    response = await api(mds, "sign", cookies, upload_token=token, part_numbers=[4])
    assert response.status_code == 400
    assert "not in this upload's plan" in response.json()["errors"][0]


async def test_abort_leaves_no_multipart_upload_in_bucket(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies))["upload_token"]
    put_parts(await sign(mds, cookies, token, [1]), CONTENT, PART)
    assert len(await open_uploads(bucket)) == 1
    response = await api(mds, "abort", cookies, upload_token=token)
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert await open_uploads(bucket) == []
    after = await api(mds, "complete", cookies, upload_token=token)
    assert after.status_code == 400
    assert "no longer exists" in after.json()["errors"][0]


async def test_resume_continues_from_parts_in_bucket(mds, bucket):
    cookies = actor_cookies(mds)
    first = await create(mds, cookies)
    token = first["upload_token"]
    put_parts(await sign(mds, cookies, token, [1, 2]), CONTENT, PART)
    # The page reloads: the browser sends the token it remembered for this file.
    resumed = await create(mds, cookies, resume_token=token)
    assert resumed["resumed"] is True and resumed["upload_token"] == token
    done = {p["part_number"] for p in resumed["parts"]}
    assert done == {1, 2}
    remaining = [n for n in range(1, resumed["part_count"] + 1) if n not in done]
    put_parts(await sign(mds, cookies, token, remaining), CONTENT, PART)
    completed = await api(mds, "complete", cookies, upload_token=token)
    assert completed.status_code == 201, completed.text
    key = bucket.prefix + completed.json()["file"]["id"].removeprefix("df-") + "/big.bin"
    assert bucket.get(key) == CONTENT


async def test_resume_token_for_another_file_starts_a_new_upload(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies))["upload_token"]
    other = await create(mds, cookies, filename="other.bin", resume_token=token)
    assert other["resumed"] is False and other["upload_token"] != token


async def test_resume_token_after_abort_starts_a_new_upload(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies))["upload_token"]
    await api(mds, "abort", cookies, upload_token=token)
    again = await create(mds, cookies, resume_token=token)
    assert again["resumed"] is False and again["upload_token"] != token


async def test_completed_multipart_token_is_refused_after_its_file_is_deleted(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies))["upload_token"]
    put_parts(await sign(mds, cookies, token, [1, 2, 3]), CONTENT, PART)
    file_id = (await api(mds, "complete", cookies, upload_token=token)).json()["file"]["id"]
    deleted = await mds.client.post(f"/-/files/{file_id}/-/delete", cookies=cookies)
    assert deleted.status_code == 200, deleted.text
    again = await api(mds, "complete", cookies, upload_token=token)
    assert again.status_code == 409, again.text
    assert "its file has since been deleted" in again.json()["errors"][0]
    assert bucket.keys(bucket.prefix) == []
    # Choosing the same file again is a new upload, not a resume of the old one.
    fresh = await create(mds, cookies, resume_token=token)
    assert fresh["resumed"] is False and fresh["upload_token"] != token


async def test_resume_token_of_a_completed_upload_names_the_file_instead_of_uploading_again(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies))["upload_token"]
    put_parts(await sign(mds, cookies, token, [1, 2, 3]), CONTENT, PART)
    completed = await api(mds, "complete", cookies, upload_token=token)
    assert completed.status_code == 201, completed.text
    # Its answer was lost and the page reloaded: the browser still remembers the token.
    again = await api(
        mds,
        "create",
        cookies,
        filename="big.bin",
        content_type="application/octet-stream",
        size=len(CONTENT),
        resume_token=token,
    )
    assert again.status_code == 409, again.text
    assert again.json()["file"] == completed.json()["file"]
    assert await open_uploads(bucket) == []


async def test_another_actor_cannot_use_the_token(mds, bucket):
    token = (await create(mds, actor_cookies(mds)))["upload_token"]
    response = await api(mds, "sign", actor_cookies(mds, "mallory"), upload_token=token, part_numbers=[1])
    assert response.status_code == 403 and response.json()["ok"] is False
    resumed = await create(mds, actor_cookies(mds, "mallory"), resume_token=token)
    assert resumed["resumed"] is False


@pytest.mark.parametrize("step", ["parts", "complete", "abort"])
async def test_another_actor_can_neither_list_nor_end_an_upload(mds, bucket, step):
    # parts is what the uploader's list of unfinished uploads asks after a reload.
    token = (await create(mds, actor_cookies(mds)))["upload_token"]
    response = await api(mds, step, actor_cookies(mds, "mallory"), upload_token=token)
    assert response.status_code == 403 and response.json()["ok"] is False
    assert "parts" not in response.json()
    assert len(bucket.multipart_uploads()) == 1  # alice's upload, untouched


async def test_tampered_token_is_rejected(mds, bucket):
    token = (await create(mds, actor_cookies(mds)))["upload_token"]
    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    response = await api(mds, "complete", actor_cookies(mds), upload_token=tampered)
    assert response.status_code == 400
    assert "not valid" in response.json()["errors"][0]


async def test_direct_upload_token_is_refused_by_multipart_endpoints(mds, bucket):
    cookies = actor_cookies(mds)
    prepared = await mds.client.post(
        "/-/files/upload/s3files/-/prepare", json={"filename": "a.txt", "size": 3}, cookies=cookies
    )
    response = await api(mds, "sign", cookies, upload_token=prepared.json()["upload_token"], part_numbers=[1])
    assert response.status_code == 400 and "single-request" in response.json()["errors"][0]


async def test_limits_are_enforced_before_anything_is_created(make_datasette, bucket):
    config = bucket.source_config(max_file_size="8MiB", allowed_content_types=["video/*"])
    ds = await make_datasette({"s3files": {"storage": "s3", "config": config}})
    cookies = actor_cookies(ds)
    too_big = await api(ds, "create", cookies, filename="a.mp4", content_type="video/mp4", size=9 * MIB)
    wrong_type = await api(ds, "create", cookies, filename="a.zip", content_type="application/zip", size=MIB)
    assert too_big.status_code == 400 and "too large" in too_big.json()["errors"][0]
    assert wrong_type.status_code == 400 and "not allowed" in wrong_type.json()["errors"][0]
    assert await open_uploads(bucket) == []


@pytest.mark.parametrize(
    "step, body, status",
    [
        ("create", {"filename": "a.bin"}, 400),
        ("create", {"filename": "../a", "size": 5}, 400),
        ("sign", {}, 400),
        ("sign", {"upload_token": 12}, 400),
        ("parts", {"upload_token": "nonsense"}, 400),
        ("complete", {"upload_token": ""}, 400),
        ("abort", {}, 400),
    ],
)
async def test_bad_input_is_a_4xx_json_error(mds, step, body, status):
    response = await api(mds, step, actor_cookies(mds), **body)
    assert response.status_code == status
    assert response.json()["ok"] is False and response.json()["errors"]


async def test_non_json_body_and_get_are_refused(mds):
    cookies = actor_cookies(mds)
    not_json = await mds.client.post(f"{BASE}/create", content=b"x", cookies=cookies)
    assert not_json.status_code == 400 and not_json.json()["ok"] is False
    get = await mds.client.get(f"{BASE}/create", cookies=cookies)
    assert get.status_code == 405


async def test_anonymous_cannot_create(mds, bucket):
    response = await api(mds, "create", {}, filename="a.bin", size=10)
    assert response.status_code == 403
    assert await open_uploads(bucket) == []


async def test_upload_page_shows_uploader_with_threshold(mds):
    page = await mds.client.get("/-/files-s3/upload/s3files", cookies=actor_cookies(mds))
    assert page.status_code == 200
    assert "<datasette-files-s3-upload" in page.text
    assert f'multipart-threshold="{5 * MIB}"' in page.text
    assert "datasette-files-s3-upload.js" in page.text
    assert "secret" not in page.text.lower()


async def test_upload_page_needs_upload_permission(mds):
    assert (await mds.client.get("/-/files-s3/upload/s3files")).status_code == 403
    assert (await mds.client.get("/-/files-s3/upload/nope", cookies=actor_cookies(mds))).status_code == 404


async def test_complete_reads_the_checksums_of_10000_parts(make_datasette, bucket):
    """S3's most parts: complete's body then carries 10,000 SHA-256s (about 600 KiB
    in hex), over the 64 KiB other endpoints read. It is read and judged (the
    parts were never sent: a 400 naming them), never refused as too large (413)."""
    config = bucket.source_config(multipart_threshold="5MiB", max_file_size="1TiB")
    ds = await make_datasette({"s3files": {"storage": "s3", "config": config}})
    cookies = actor_cookies(ds)
    response = await api(
        ds,
        "create",
        cookies,
        filename="huge.bin",
        content_type="application/octet-stream",
        size=10_000 * PART,
    )
    created = response.json()
    assert created["part_count"] == 10_000, created
    checksums = {str(n): hashlib.sha256(str(n).encode()).hexdigest() for n in range(1, 10_001)}
    response = await api(ds, "complete", cookies, upload_token=created["upload_token"], checksums=checksums)
    assert response.status_code == 400, response.text
    assert "part" in response.json()["errors"][0].lower()
    assert (await api(ds, "abort", cookies, upload_token=created["upload_token"])).status_code == 200
