"""No route of ours or of datasette-files makes Datasette hold a whole object.

`S3Storage.read_file` (datasette-files' CSV import page and its import job)
reads at most `max_read_size`, by one ranged GET whose answer's total size is
checked before its body is read; `read_file_limited` (datasette-files after
0.1a3) the same with the caller's limit. A larger file gets a clear refusal.
"""

import re
import uuid

import httpx
import pytest

from datasette_files_s3.errors import ReadTooLarge
from datasette_files_s3.storage import S3Storage
from tests.helpers import actor_cookies, upload
from tests.live_servers import DatasetteProcess, live_config

MIB = 1024**2


async def storage_for(config: dict) -> S3Storage:
    storage = S3Storage()
    await storage.configure(config)
    return storage


async def test_read_file_returns_a_file_within_max_read_size(bucket):
    storage = await storage_for(bucket.source_config(max_read_size=8))
    await storage.put_object("a.csv", b"a,b\n1,2\n", "text/csv")
    assert await storage.read_file("a.csv") == b"a,b\n1,2\n"


async def test_read_file_of_an_empty_object_is_empty(bucket):
    storage = await storage_for(bucket.source_config())
    await storage.put_object("e.csv", b"", "text/csv")
    assert await storage.read_file("e.csv") == b""


async def test_read_file_refuses_a_larger_file_with_a_ranged_get(bucket, s3_proxy):
    if s3_proxy is None:
        pytest.skip("needs the logging proxy in front of this run's S3 server")
    storage = await storage_for(bucket.source_config(max_read_size=1000, endpoint_url=s3_proxy.url))
    await storage.put_object("big.csv", b"x" * 5000, "text/csv")
    with pytest.raises(ReadTooLarge) as refused:
        await storage.read_file("big.csv")
    assert refused.value.status == 413
    assert "big.csv" in str(refused.value) and "max_read_size" in str(refused.value)
    gets = [
        sent
        for (method, _), (path, sent) in zip(s3_proxy.requests, s3_proxy.ranges, strict=True)
        if method == "GET" and path.split("?")[0].endswith("/big.csv")
    ]
    assert gets == ["bytes=0-1000"]


async def test_read_file_limited_reads_at_most_the_limit(bucket):
    storage = await storage_for(bucket.source_config())
    await storage.put_object("l.bin", b"y" * 100, "text/csv")
    assert await storage.read_file_limited("l.bin", 100) == b"y" * 100
    with pytest.raises(Exception, match="99 byte read limit"):
        await storage.read_file_limited("l.bin", 99)


async def test_read_file_limited_never_exceeds_max_read_size(bucket):
    storage = await storage_for(bucket.source_config(max_read_size=50))
    await storage.put_object("m.bin", b"z" * 100, "text/csv")
    with pytest.raises(Exception, match="50 byte read limit"):
        await storage.read_file_limited("m.bin", 1000)


async def test_import_page_of_a_file_over_max_read_size_is_a_clear_413(make_datasette, bucket):
    ds = await make_datasette(
        {"s3files": {"storage": "s3", "config": bucket.source_config(max_read_size=100)}}
    )
    file = (await upload(ds, actor_cookies(ds), b"a,b\n" * 100, filename="t.csv", content_type="text/csv"))[
        "file"
    ]
    response = await ds.client.get(f"/-/files/import/{file['id']}", cookies=actor_cookies(ds))
    assert response.status_code == 413
    body = response.json()
    assert body["ok"] is False and "max_read_size" in body["errors"][0]


def vm_hwm(pid: int) -> int:
    """The process's peak resident set size so far, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read()).group(1)) * 1024


def test_import_page_of_a_large_file_does_not_raise_datasettes_peak_rss(s3_server):
    """An anonymous GET of datasette-files' import page for a 48 MiB CSV: the
    peak RSS of a real `datasette serve` stays within a few MiB (it grew by the
    whole file, 48 MiB or more, when read_file read it). The S3 server runs as
    its own process, so its copy of the bytes is not counted."""
    bucket = f"rss-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    server = DatasetteProcess(live_config(s3_server.source_config(bucket))).start()
    try:
        cookies = {"ds_actor": server.cookie_for("alice")}

        def upload_csv(name: str, content: bytes) -> str:
            with httpx.Client(base_url=server.url, cookies=cookies, timeout=120) as client:
                prepared = client.post(
                    "/-/files/upload/s3files/-/prepare",
                    json={"filename": name, "content_type": "text/csv", "size": len(content)},
                ).json()
                sent = httpx.post(
                    prepared["upload_url"],
                    data=prepared["upload_fields"],
                    files={"file": (name, content, "text/csv")},
                    timeout=120,
                )
                assert sent.status_code in (200, 201, 204), sent.text
                done = client.post(
                    "/-/files/upload/s3files/-/complete", json={"upload_token": prepared["upload_token"]}
                )
                assert done.status_code == 201, done.text
                return done.json()["file"]["id"]

        small = upload_csv("small.csv", b"a,b\n1,2\n")
        large = upload_csv("large.csv", b"1234567,abcdefgh\n" * (48 * MIB // 17))
        # Warm up: the page's templates, boto3's models and connections are loaded once.
        assert httpx.get(f"{server.url}/-/files/import/{small}", timeout=60).status_code == 200
        before = vm_hwm(server.process.pid)
        response = httpx.get(f"{server.url}/-/files/import/{large}", timeout=120)
        grown = vm_hwm(server.process.pid) - before
        assert grown < 16 * MIB, f"peak RSS grew by {grown / MIB:.1f} MiB"
        assert response.status_code == 413, response.text
    finally:
        server.stop()


async def test_read_bytes_from_a_store_that_ignores_range_reads_no_further(bucket, s3_proxy):
    """A store that ignores Range answers with the whole object. read_bytes (thumbnails,
    datasette-files' File.read(max_bytes)) reads no more of it than it asked for and hangs
    up: of a 32 MiB object the proxy gets to send only what loopback buffers hold, where
    reading the whole answer took all 32 MiB. The proxy drops the Range header, a fault no
    real test store produces; only moto serves the request unsigned that leaves."""
    if s3_proxy is None or bucket.server.enforces_policy:
        pytest.skip("needs the logging proxy and a store that checks no signature (moto)")
    storage = await storage_for(bucket.source_config(endpoint_url=s3_proxy.url))
    content = bytes(range(256)) * (32 * MIB // 256)
    await storage.put_object("whole.bin", content, "application/octet-stream")
    s3_proxy.ignore_range = True
    s3_proxy.answered.clear()
    s3_proxy.body_bytes_sent = 0
    assert await storage.read_bytes("whole.bin", 100) == content[:100]
    assert s3_proxy.answered.wait(60)
    assert s3_proxy.body_bytes_sent < 24 * MIB
