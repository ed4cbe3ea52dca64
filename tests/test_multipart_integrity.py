"""SHA-256 on the multipart path: each part URL signs its part's checksum,
complete checks the store's composite against the client's part hashes, and
content_hash records that composite as `sha256-composite:<hex>-<parts>`.

moto checks no part checksum but computes the object's composite from the
bytes it holds (measured here), so a part whose bytes differ from what the
client hashed is still found at complete.
"""

import base64
import hashlib

import httpx
import pytest
import pytest_asyncio

from tests.helpers import actor_cookies
from tests.s3_servers import MotoServer
from tests.test_multipart_endpoints import CONTENT, PART, api, create, open_uploads, part_bytes

# The composite the store reports on HEAD is what content_hash records; Ceph RGW reports none.
REPORTS_A_COMPOSITE = pytest.mark.store("reports-checksums", reason="content_hash is the store's composite")


@pytest_asyncio.fixture
async def mds(make_datasette, bucket):
    """Datasette whose s3 source sends anything over 5 MiB in 5 MiB parts."""
    config = bucket.source_config(multipart_threshold="5MiB", max_file_size="1GiB")
    return await make_datasette({"s3files": {"storage": "s3", "config": config}})


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def part_checksums(content: bytes, count: int) -> dict:
    return {str(n): b64_sha256(part_bytes(content, PART, n)) for n in range(1, count + 1)}


def composite_digest(content: bytes, count: int) -> bytes:
    """S3's composite SHA-256 of `content` sent in `count` parts: the digest of the parts' digests."""
    digests = b"".join(hashlib.sha256(part_bytes(content, PART, n)).digest() for n in range(1, count + 1))
    return hashlib.sha256(digests).digest()


def expected_content_hash(content: bytes, count: int) -> str:
    return f"sha256-composite:{composite_digest(content, count).hex()}-{count}"


async def sign_and_put(ds, cookies, token, numbers, sent: bytes, hashed: bytes = CONTENT):
    """Sign each part with the SHA-256 of `hashed`'s part, then PUT `sent`'s part."""
    checksums = {str(n): b64_sha256(part_bytes(hashed, PART, n)) for n in numbers}
    signed = await api(ds, "sign", cookies, upload_token=token, part_numbers=numbers, checksums=checksums)
    assert signed.status_code == 200, signed.text
    answer = signed.json()
    for n in numbers:
        headers = answer["headers"][str(n)]
        assert headers == {"x-amz-checksum-sha256": checksums[str(n)]}
        assert "x-amz-checksum-sha256" in answer["urls"][str(n)]  # among X-Amz-SignedHeaders
        response = httpx.put(answer["urls"][str(n)], content=part_bytes(sent, PART, n), headers=headers)
        if response.status_code != 200:
            return response  # an enforcing store refuses the part here
    return None


@REPORTS_A_COMPOSITE
async def test_multipart_with_checksums_records_the_composite(mds, bucket):
    cookies = actor_cookies(mds)
    created = await create(mds, cookies, checksums=True)
    assert created["checksums"] is True
    token = created["upload_token"]
    assert await sign_and_put(mds, cookies, token, [1, 2, 3], CONTENT) is None
    completed = await api(mds, "complete", cookies, upload_token=token, checksums=part_checksums(CONTENT, 3))
    assert completed.status_code == 201, completed.text
    file = completed.json()["file"]
    assert file["content_hash"] == expected_content_hash(CONTENT, 3)
    page = await mds.client.get(f"/-/files/{file['id']}")
    assert "Content Hash" in page.text and file["content_hash"] in page.text


async def three_checksummed_parts_completed(mds, bucket):
    """CONTENT uploaded as 3 parts with their SHA-256s and completed: (complete's answer, the key)."""
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies, checksums=True))["upload_token"]
    assert await sign_and_put(mds, cookies, token, [1, 2, 3], CONTENT) is None
    completed = await api(mds, "complete", cookies, upload_token=token, checksums=part_checksums(CONTENT, 3))
    assert completed.status_code == 201, completed.text
    [key] = bucket.keys(bucket.prefix)
    return completed, key


@REPORTS_A_COMPOSITE
async def test_the_stores_composite_is_read_with_or_without_its_part_count(mds, bucket):
    """AWS S3 reports a composite as `<base64>-<parts>`, and so does LocalStack;
    moto 5.2 leaves the count off. Each form is pinned for its store, and either
    way the composite content_hash is recorded."""
    completed, key = await three_checksummed_parts_completed(mds, bucket)
    reported = bucket.client.head_object(Bucket=bucket.name, Key=key, ChecksumMode="ENABLED")[
        "ChecksumSHA256"
    ]
    composite = base64.b64encode(composite_digest(CONTENT, 3)).decode()
    assert reported == (composite if isinstance(bucket.server, MotoServer) else f"{composite}-3")
    assert completed.json()["file"]["content_hash"] == expected_content_hash(CONTENT, 3)


@pytest.mark.store("reports-no-checksums")
async def test_no_content_hash_where_the_store_reports_no_composite(mds, bucket):
    """Ceph RGW takes every part's x-amz-checksum-sha256 and checks none, and HEAD
    reports no composite: the upload completes, and content_hash stays empty rather
    than be made from hashes nobody checked."""
    completed, key = await three_checksummed_parts_completed(mds, bucket)
    head = bucket.client.head_object(Bucket=bucket.name, Key=key, ChecksumMode="ENABLED")
    assert "ChecksumSHA256" not in head
    assert completed.json()["file"]["content_hash"] is None
    assert bucket.get(key) == CONTENT


async def test_sign_needs_each_parts_checksum(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies, checksums=True))["upload_token"]
    response = await api(
        mds, "sign", cookies, upload_token=token, part_numbers=[1, 2], checksums={"1": "x" * 64}
    )
    assert response.status_code == 400
    assert "checksums[1] must be the SHA-256" in response.json()["errors"][0]
    response = await api(mds, "sign", cookies, upload_token=token, part_numbers=[1])
    assert response.status_code == 400 and "checksums is required" in response.json()["errors"][0]


@REPORTS_A_COMPOSITE
async def test_a_corrupted_part_is_refused_and_the_upload_ends_cleanly(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies, checksums=True))["upload_token"]
    corrupted = bytearray(CONTENT)
    corrupted[PART + 10] ^= 0xFF  # one bit flipped in part 2, after it was hashed
    refused = await sign_and_put(mds, cookies, token, [1, 2, 3], bytes(corrupted))
    if refused is not None:
        # The enforcing store refused the part: the uploader stops and aborts.
        assert refused.status_code == 400 and "BadDigest" in refused.text
        aborted = await api(mds, "abort", cookies, upload_token=token)
        assert aborted.status_code == 200
    else:
        # moto took it: complete finds the composite is not what was hashed.
        completed = await api(
            mds, "complete", cookies, upload_token=token, checksums=part_checksums(CONTENT, 3)
        )
        assert completed.status_code == 400, completed.text
        assert any("composite SHA-256" in e for e in completed.json()["errors"])
    assert await open_uploads(bucket) == []
    assert bucket.keys(bucket.prefix) == []


async def test_complete_needs_every_parts_checksum(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies, checksums=True))["upload_token"]
    await sign_and_put(mds, cookies, token, [1, 2, 3], CONTENT)
    partial = part_checksums(CONTENT, 2)
    response = await api(mds, "complete", cookies, upload_token=token, checksums=partial)
    assert response.status_code == 400 and "no SHA-256 for part 3" in response.json()["errors"][0]


@REPORTS_A_COMPOSITE
async def test_resumed_upload_ends_with_correct_checksums(mds, bucket):
    cookies = actor_cookies(mds)
    token = (await create(mds, cookies, checksums=True))["upload_token"]
    await sign_and_put(mds, cookies, token, [1, 2], CONTENT)
    resumed = await create(mds, cookies, resume_token=token)
    assert resumed["resumed"] is True and resumed["checksums"] is True
    assert [p["part_number"] for p in resumed["parts"]] == [1, 2]
    await sign_and_put(mds, cookies, token, [3], CONTENT)
    completed = await api(mds, "complete", cookies, upload_token=token, checksums=part_checksums(CONTENT, 3))
    assert completed.status_code == 201, completed.text
    assert completed.json()["file"]["content_hash"] == expected_content_hash(CONTENT, 3)


async def test_without_checksums_nothing_is_recorded(mds, bucket):
    cookies = actor_cookies(mds)
    created = await create(mds, cookies)
    assert created["checksums"] is False
    token = created["upload_token"]
    signed = await api(mds, "sign", cookies, upload_token=token, part_numbers=[1, 2, 3])
    for n, url in signed.json()["urls"].items():
        assert httpx.put(url, content=part_bytes(CONTENT, PART, int(n))).status_code == 200
    completed = await api(mds, "complete", cookies, upload_token=token)
    assert completed.status_code == 201, completed.text
    assert completed.json()["file"]["content_hash"] is None


async def test_a_source_with_checksum_none_creates_without_checksums(make_datasette, bucket):
    config = bucket.source_config(multipart_threshold="5MiB", checksum="none")
    ds = await make_datasette({"s3files": {"storage": "s3", "config": config}})
    created = await create(ds, actor_cookies(ds), checksums=True)
    assert created["checksums"] is False
