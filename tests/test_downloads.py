"""Downloads: a presigned GET that never lets the bucket's origin render active
content, judged by the file name and by the recorded content type."""

from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from datasette_files_s3.keys import attachment_disposition, download_type
from tests.helpers import actor_cookies, upload

ACTIVE = b"<html><script>alert(document.domain)</script></html>"


def presigned_overrides(url: str) -> tuple[str, str]:
    """The response-content-type and response-content-disposition a presigned GET carries."""
    query = parse_qs(urlparse(url).query)
    return query["response-content-type"][0], query["response-content-disposition"][0]


@pytest.mark.parametrize(
    "filename, content_type",
    [
        ("page.txt", "text/html"),
        ("img.png", "image/svg+xml"),
        ("doc.xht", "application/xhtml+xml"),
        ("data.bin", "text/xml"),
        ("app.txt", "text/javascript"),
        ("lib.dat", "application/javascript"),
        ("feed.dat", "application/atom+xml"),
        ("page.html", "text/plain"),
    ],
)
async def test_active_content_downloads_as_an_opaque_attachment(ds, filename, content_type):
    """Judged by the recorded type as well as the name: in the URL and in what the bucket answers."""
    file = (await upload(ds, actor_cookies(ds), ACTIVE, filename=filename, content_type=content_type))["file"]
    redirect = await ds.client.get(file["download_url"])
    assert redirect.status_code == 302
    url = redirect.headers["location"]
    served_type, disposition = presigned_overrides(url)
    assert served_type == "application/octet-stream"
    assert disposition.startswith(f'attachment; filename="{filename}"')
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == ACTIVE
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment;")


async def test_other_content_downloads_with_its_recorded_type(ds):
    file = (await upload(ds, actor_cookies(ds), b"a,b\n", filename="t.csv", content_type="text/csv"))["file"]
    url = (await ds.client.get(file["download_url"])).headers["location"]
    assert presigned_overrides(url)[0] == "text/csv"
    response = httpx.get(url)
    assert response.headers["content-type"] == "text/csv"
    assert response.headers["content-disposition"].startswith('attachment; filename="t.csv"')


async def test_download_url_without_a_type_judges_the_stored_one(ds, bucket):
    """A caller that has only the path (another plugin): the object's own type decides."""
    from datasette_files_s3 import files_bridge

    bucket.client.put_object(
        Bucket=bucket.name, Key=bucket.prefix + "x/notes.txt", Body=ACTIVE, ContentType="text/html"
    )
    url = await files_bridge.storage_for("s3files").download_url("x/notes.txt")
    assert presigned_overrides(url)[0] == "application/octet-stream"
    assert httpx.get(url).headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "filename, content_type, served",
    [
        ("a.png", "image/png", "image/png"),
        ("a.txt", "Text/Plain; charset=utf-8", "text/plain"),
        ("a.txt", "TEXT/HTML", "application/octet-stream"),
        ("a.txt", "text/html; charset=utf-8", "application/octet-stream"),
        ("a.txt", "application/rss+xml", "application/octet-stream"),
        ("a.txt", "application/xml", "application/octet-stream"),
        ("a.txt", "application/x-javascript", "application/octet-stream"),
        ("a.txt", "application/pdf", "application/octet-stream"),
        ("a.svg", "image/png", "application/octet-stream"),
        ("a.XHT", "text/plain", "application/octet-stream"),
        ("a.txt", "", "application/octet-stream"),
        ("a.txt", None, "application/octet-stream"),
        ("a.txt", "text/plain\r\nX-Injected: 1", "application/octet-stream"),
        ("a.txt", "imagé/png", "application/octet-stream"),
        ("page.html.", "text/plain", "application/octet-stream"),
        ("script.js ", "text/plain", "application/octet-stream"),
        ("page.html. . ", "text/plain", "application/octet-stream"),
        ("notes.txt.", "text/plain", "text/plain"),
        ("page.html\u00a0", "text/plain", "application/octet-stream"),
        ("page.html\u3000", "text/plain", "application/octet-stream"),
    ],
)
def test_download_type(filename, content_type, served):
    assert download_type(filename, content_type) == served


@pytest.mark.parametrize(
    "filename, fallback",
    [
        ("script.js ", "script.js_"),
        ("page.html.", "page.html_"),
        ("page.html. .", "page.html___"),
        ("  report.pdf", "report.pdf"),
        ("...", "___"),
        ("報告書", "___"),
    ],
)
def test_attachment_fallback_never_restores_a_hidden_extension(filename, fallback):
    assert attachment_disposition(filename).startswith(f'attachment; filename="{fallback}";')
