"""Small helpers the tests share: driving the upload API as a browser would."""

from __future__ import annotations

import httpx


async def prepare(ds, cookies, source="s3files", **body):
    """POST prepare with a JSON body; returns the httpx response."""
    body.setdefault("filename", "hello.txt")
    body.setdefault("content_type", "text/plain")
    return await ds.client.post(
        f"/-/files/upload/{source}/-/prepare",
        json=body,
        cookies=cookies,
    )


def post_form(prepared: dict, content: bytes, filename="hello.txt", content_type="text/plain"):
    """POST the presigned form straight to the bucket, fields first and `file` last; the answer."""
    return httpx.post(
        prepared["upload_url"],
        data=prepared["upload_fields"],
        files={"file": (filename, content, content_type)},
        timeout=60,
    )


def post_to_bucket(prepared: dict, content: bytes, filename="hello.txt", content_type="text/plain"):
    """`post_form`, which the bucket must accept."""
    response = post_form(prepared, content, filename, content_type)
    assert response.status_code in (200, 201, 204), response.text
    return response


async def send_through_datasette(ds, cookies, prepared: dict, content: bytes, filename: str, source: str):
    """datasette-files' own flow after prepare: POST the bytes to Datasette's upload_url,
    then complete; returns the complete response."""
    sent = await ds.client.post(
        prepared["upload_url"],
        data=prepared["upload_fields"],
        files={"file": (filename, content, "text/plain")},
        cookies=cookies,
    )
    assert sent.status_code == 200, sent.text
    return await complete(ds, cookies, prepared["upload_token"], source=source)


async def complete(ds, cookies, token, source="s3files"):
    """POST complete with the upload token; returns the httpx response."""
    return await ds.client.post(
        f"/-/files/upload/{source}/-/complete",
        json={"upload_token": token},
        cookies=cookies,
    )


async def upload(
    ds, cookies, content: bytes, filename="hello.txt", content_type="text/plain", source="s3files"
):
    """The whole direct-upload flow; returns the complete response's JSON."""
    prepared = await prepare(
        ds, cookies, source=source, filename=filename, content_type=content_type, size=len(content)
    )
    assert prepared.status_code == 200, prepared.text
    post_to_bucket(prepared.json(), content, filename, content_type)
    completed = await complete(ds, cookies, prepared.json()["upload_token"], source=source)
    assert completed.status_code == 201, completed.text
    return completed.json()


def actor_cookies(ds, actor_id: str = "alice") -> dict:
    """Cookies that sign the request in as the given actor."""
    return {"ds_actor": ds.client.actor_cookie({"id": actor_id})}


def datasette_config(sources: dict, extra_permissions: dict | None = None) -> dict:
    """datasette.yaml as a dict: the given sources, browse for all, upload/delete for logged-in actors."""
    permissions = {
        "files-browse": True,
        "files-upload": {"id": "*"},
        "files-edit": {"id": "*"},
        "files-delete": {"id": "*"},
    }
    permissions.update(extra_permissions or {})
    return {
        "plugins": {"datasette-files": {"sources": sources}},
        "permissions": permissions,
    }


async def thumbnail_after_upload(ds, content: bytes, filename: str, content_type="image/png"):
    """Upload the direct way as alice, then GET the file's thumbnail; returns that response."""
    file = (await upload(ds, actor_cookies(ds), content, filename=filename, content_type=content_type))[
        "file"
    ]
    return await ds.client.get(file["thumbnail_url"])


async def assert_icon_and_none_cached(ds, response) -> None:
    """The answer is datasette-files' file-type icon, and no thumbnail was cached."""
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    cached = await ds.get_internal_database().execute("select count(*) from datasette_files_thumbnails")
    assert cached.single_value() == 0


async def async_chunks(total: int, chunk: int = 64 * 1024):
    """`total` bytes in 64 KiB pieces, as a client's request body reaches Datasette."""
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        yield bytes([sent % 251]) * size
        sent += size
