"""S3Storage against the datasette-files Storage contract, over real HTTP."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from datasette_files_s3.errors import BucketUnusable, CredentialsUnavailable, StorageUnavailable
from datasette_files_s3.storage import S3Storage
from tests.helpers import async_chunks
from tests.live_servers import free_port

MIB = 1024**2


async def make_storage(config: dict) -> S3Storage:
    storage = S3Storage()
    await storage.configure(config)
    return storage


@pytest.fixture
async def storage(bucket):
    return await make_storage(bucket.source_config())


def put(bucket, path, body=b"", content_type="application/octet-stream"):
    bucket.client.put_object(
        Bucket=bucket.name, Key=bucket.prefix + path, Body=body, ContentType=content_type
    )


async def test_capabilities_follow_max_file_size(bucket):
    storage = await make_storage(bucket.source_config(max_file_size="10MiB"))
    capabilities = storage.capabilities
    assert capabilities.max_file_size == 10 * 1024**2
    assert capabilities.can_upload and capabilities.can_delete and capabilities.can_list
    assert capabilities.can_generate_signed_urls and not capabilities.requires_proxy_download


async def test_get_file_metadata(storage, bucket):
    put(bucket, "abc/photo.png", b"12345", "image/png")
    meta = await storage.get_file_metadata("abc/photo.png")
    assert (meta.path, meta.filename, meta.size, meta.content_type) == (
        "abc/photo.png",
        "photo.png",
        5,
        "image/png",
    )
    assert await storage.get_file_metadata("abc/missing.png") is None


async def test_read_file_and_missing_file(storage, bucket):
    put(bucket, "a/b.txt", b"hello")
    assert await storage.read_file("a/b.txt") == b"hello"
    with pytest.raises(FileNotFoundError):
        await storage.read_file("a/nope.txt")


async def test_read_bytes_uses_range(storage, bucket):
    put(bucket, "r/big.bin", bytes(range(256)) * 100)
    assert await storage.read_bytes("r/big.bin", 10) == bytes(range(10))
    assert await storage.read_bytes("r/big.bin", 0) == b""
    put(bucket, "r/empty.bin", b"")
    assert await storage.read_bytes("r/empty.bin", 10) == b""


async def test_stream_file_yields_chunks(storage, bucket):
    content = bytes(range(256)) * 4096  # 1 MiB
    put(bucket, "s/data.bin", content)
    chunks = [chunk async for chunk in storage.stream_file("s/data.bin", chunk_size=64 * 1024)]
    assert len(chunks) == 16
    assert b"".join(chunks) == content


async def test_list_files_relative_to_prefix_with_cursor(storage, bucket):
    for i in range(5):
        put(bucket, f"dir/f{i}.txt", b"x" * i)
    bucket.client.put_object(Bucket=bucket.name, Key=bucket.area + "outside/prefix.txt", Body=b"x")
    first, cursor = await storage.list_files(limit=2)
    assert [f.path for f in first] == ["dir/f0.txt", "dir/f1.txt"]
    assert cursor is not None
    rest, cursor2 = await storage.list_files(cursor=cursor, limit=10)
    assert [f.path for f in rest] == ["dir/f2.txt", "dir/f3.txt", "dir/f4.txt"]
    assert cursor2 is None
    assert [f.size for f in rest] == [2, 3, 4]
    only, _ = await storage.list_files(prefix="dir/f4")
    assert [f.filename for f in only] == ["f4.txt"]


async def test_delete_file(storage, bucket):
    put(bucket, "d/x.txt", b"x")
    await storage.delete_file("d/x.txt")
    assert await storage.get_file_metadata("d/x.txt") is None
    await storage.delete_file("d/x.txt")  # idempotent, like S3


async def test_download_url_is_an_attachment_with_original_name(storage, bucket):
    put(bucket, "u/résumé 2026.txt", b"cv", "text/plain")
    url = await storage.download_url("u/résumé 2026.txt")
    response = httpx.get(url)
    assert response.content == b"cv"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="r_sum_ 2026.txt"')
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%202026.txt" in disposition


@pytest.mark.parametrize("name", ["x.html", "x.svg", "x.js", "x.xhtml"])
async def test_active_types_are_never_served_as_themselves(storage, bucket, name):
    put(bucket, f"a/{name}", b"<script>alert(1)</script>", "text/html")
    response = httpx.get(await storage.download_url(f"a/{name}"))
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment;")


async def test_prepare_upload_returns_presigned_post(storage, bucket):
    instructions = await storage.prepare_upload("a.txt", "text/plain", 3)
    assert instructions.upload_method == "POST"
    key = instructions.upload_fields["key"]
    response = httpx.post(
        instructions.upload_url,
        data=instructions.upload_fields,
        files={"file": ("a.txt", b"abc", "text/plain")},
    )
    assert response.status_code == 204
    assert bucket.get(key) == b"abc"


async def test_receive_upload_small_file_is_one_put(storage, bucket):
    meta = await storage.receive_upload("p/small.bin", async_chunks(100_000), "application/octet-stream")
    assert meta.size == 100_000 and meta.content_hash.startswith("sha256:")
    head = bucket.client.head_object(Bucket=bucket.name, Key=bucket.prefix + "p/small.bin")
    assert "-" not in head["ETag"]


async def test_receive_upload_large_file_streams_in_parts(storage, bucket):
    import hashlib

    total = 20 * 1024**2 + 123
    expected = hashlib.sha256()
    async for chunk in async_chunks(total):
        expected.update(chunk)
    meta = await storage.receive_upload("p/large.bin", async_chunks(total), "application/octet-stream")
    assert meta.size == total
    assert meta.content_hash == "sha256:" + expected.hexdigest()
    head = bucket.client.head_object(Bucket=bucket.name, Key=bucket.prefix + "p/large.bin")
    assert head["ContentLength"] == total
    assert head["ETag"].strip('"').endswith("-3")  # 8 MiB + 8 MiB + the rest


async def test_receive_upload_failure_leaves_no_multipart_upload(storage, bucket):
    async def broken_stream():
        async for chunk in async_chunks(10 * 1024**2):
            yield chunk
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await storage.receive_upload("p/broken.bin", broken_stream(), "application/octet-stream")
    assert bucket.multipart_uploads() == []


def test_receive_upload_memory_stays_flat(s3_server, bucket_name):
    """Streaming 96 MiB through receive_upload holds a few 8 MiB parts at most, about
    what streaming 32 MiB holds: memory does not grow with the file. Buffering the
    whole file would peak at 96 MiB or more.

    Measured in a child process (tests/memory_probe.py), so nothing else this test
    run allocates is counted; the S3 server runs as its own process, so its copy of
    the bytes is not counted either. How many parts are in memory at once depends on
    how fast the server answers, hence bounds well clear of both outcomes."""
    probe = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "memory_probe.py"), "32", "96"],
        input=json.dumps(s3_server.source_config(bucket_name)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr
    peaks = {int(mib): peak for mib, peak in json.loads(probe.stdout).items()}
    assert peaks[96] < 64 * MIB, f"peak {peaks[96] / MIB:.1f} MiB"
    assert peaks[96] < peaks[32] + 32 * MIB, {mib: f"{peak / MIB:.1f} MiB" for mib, peak in peaks.items()}
    head = s3_server.client().head_object(Bucket=bucket_name, Key="uploads/m/96.bin")
    assert head["ContentLength"] == 96 * MIB


async def test_unreachable_endpoint_names_source_and_endpoint(bucket):
    config = bucket.source_config(endpoint_url=f"http://127.0.0.1:{free_port()}")
    storage = S3Storage()
    await storage.configure(config)
    with pytest.raises(StorageUnavailable) as info:
        await storage.get_file_metadata("x")
    message = str(info.value)
    assert "cannot reach the S3 endpoint 127.0.0.1" in message
    assert bucket.server.secret_access_key not in message


async def test_missing_bucket_is_named(bucket):
    storage = await make_storage(bucket.source_config(bucket="no-such-bucket-here-123"))
    with pytest.raises(StorageUnavailable) as info:
        await storage.list_files()
    assert "bucket 'no-such-bucket-here-123' does not exist" in str(info.value)


async def test_client_is_reused_across_calls(storage, bucket):
    put(bucket, "c/x.txt", b"x")
    await storage.get_file_metadata("c/x.txt")
    first = storage._connection
    await storage.read_file("c/x.txt")
    await storage.list_files()
    assert storage._connection is first


@pytest.mark.parametrize(
    "code, kind, fragment",
    [
        ("AccessDenied", BucketUnusable, "S3 denied access to bucket 'b' (get_object: AccessDenied)"),
        ("InvalidAccessKeyId", BucketUnusable, "S3 denied access to bucket 'b'"),
        ("ExpiredToken", CredentialsUnavailable, "S3 credentials have expired"),
        ("NoSuchBucket", BucketUnusable, "bucket 'b' does not exist"),
        ("NoSuchKey", FileNotFoundError, "no object at uploads/x"),
        ("SlowDown", StorageUnavailable, "S3 get_object failed (SlowDown)"),
    ],
)
async def test_s3_error_codes_map_to_clear_errors_naming_the_source(code, kind, fragment):
    """Error codes moto cannot produce on demand (it checks no signatures), built
    as botocore builds them, including a message that quotes the key id."""
    from botocore.exceptions import ClientError

    storage = S3Storage()
    await storage.configure({"bucket": "b", "access_key_id": "AKIASHOWNOWHERE", "secret_access_key": "hush"})
    error = ClientError(
        {"Error": {"Code": code, "Message": "The AWS Access Key Id AKIASHOWNOWHERE does not exist"}},
        "GetObject",
    )
    translated = storage.translate_error(error, "get_object", "uploads/x")
    assert isinstance(translated, kind)
    assert fragment in str(translated)
    if kind is not FileNotFoundError:
        assert "datasette-files source 's3'" in str(translated)
        assert translated.code == code  # what callers test, rather than the message
    assert "AKIASHOWNOWHERE" not in str(translated) and "hush" not in str(translated)


async def test_pages_follows_continuation_until_the_last_page(storage, bucket):
    written = [f"{n}.txt" for n in range(3)]
    for path in written:
        put(bucket, path)
    params, markers = {"Prefix": bucket.prefix, "MaxKeys": 1}, {"ContinuationToken": "NextContinuationToken"}
    answers = [answer async for answer in storage.pages("list_objects_v2", params, markers)]
    assert [item["Key"] for answer in answers for item in answer["Contents"]] == [
        bucket.prefix + path for path in written
    ]
    assert len(answers) == 3
