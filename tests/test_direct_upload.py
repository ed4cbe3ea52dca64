"""The direct upload flow: prepare, POST to the bucket, complete, download."""

import httpx

from tests.helpers import actor_cookies, prepare, upload


async def test_prepare_returns_presigned_post_to_bucket(ds, bucket):
    response = await prepare(
        ds, actor_cookies(ds), filename="report.pdf", content_type="application/pdf", size=10
    )
    assert response.status_code == 200
    data = response.json()
    assert data["ok"] is True
    assert data["upload_method"] == "POST"
    assert data["upload_url"].startswith(bucket.server.endpoint_url or "https://")
    fields = data["upload_fields"]
    assert fields["key"].startswith(bucket.prefix)
    assert fields["key"].endswith("/report.pdf")
    assert fields["Content-Type"] == "application/pdf"
    assert "policy" in fields and "x-amz-signature" in fields


async def test_upload_registers_file_and_download_redirect_returns_same_bytes(ds, bucket):
    content = b"direct to the bucket\n" * 100
    data = await upload(ds, actor_cookies(ds), content, filename="notes.txt")
    file = data["file"]
    assert data["ok"] is True
    assert file["id"].startswith("df-") and len(file["id"]) == 29
    assert file["size"] == len(content)
    assert file["content_type"] == "text/plain"
    assert file["uploaded_by"] == "alice"
    assert file["source_slug"] == "s3files"

    download = await ds.client.get(file["download_url"])
    assert download.status_code == 302
    fetched = httpx.get(download.headers["location"])
    assert fetched.status_code == 200
    assert fetched.content == content
    assert fetched.headers["content-disposition"].startswith("attachment;")
    assert "notes.txt" in fetched.headers["content-disposition"]


async def test_uploaded_file_appears_in_datasette_files_pages(ds, bucket):
    data = await upload(ds, actor_cookies(ds), b"searchable", filename="quarterly-budget.txt")
    file_id = data["file"]["id"]
    info = await ds.client.get(f"/-/files/{file_id}")
    assert info.status_code == 200 and "quarterly-budget.txt" in info.text
    as_json = (await ds.client.get(f"/-/files/{file_id}.json")).json()
    assert as_json["path"].endswith("/quarterly-budget.txt")
    source_page = await ds.client.get("/-/files/source/s3files")
    assert file_id in source_page.text
    search = (await ds.client.get("/-/files/search.json?q=quarterly")).json()
    assert [f["id"] for f in search["files"]] == [file_id]


async def test_delete_removes_object_and_row(ds, bucket):
    cookies = actor_cookies(ds)
    data = await upload(ds, cookies, b"to be deleted", filename="gone.txt")
    file_id = data["file"]["id"]
    assert any(k.endswith("/gone.txt") for k in bucket.keys(bucket.prefix))
    response = await ds.client.post(f"/-/files/{file_id}/-/delete", cookies=cookies)
    assert response.status_code == 200, response.text
    assert not any(k.endswith("/gone.txt") for k in bucket.keys(bucket.prefix))
    assert (await ds.client.get(f"/-/files/{file_id}.json")).status_code == 404


async def test_non_latin_filename_round_trips(ds, bucket):
    content = "データ".encode()
    data = await upload(ds, actor_cookies(ds), content, filename="報告書 2026.txt")
    assert data["file"]["filename"] == "報告書 2026.txt"
    download = await ds.client.get(data["file"]["download_url"])
    fetched = httpx.get(download.headers["location"])
    assert fetched.content == content
    assert "UTF-8''" in fetched.headers["content-disposition"]
