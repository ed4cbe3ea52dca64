"""The bundled uploader's side of Datasette: its page, its place on datasette-files'
pages, and the multipart endpoints it calls.

Each endpoint parses the request, checks who is asking (http.py), calls
multipart.py and answers; errors are `{"ok": false, "errors": [...]}` with a
4xx (or 502/503 when S3 or the credentials broker fails), never a 500
(responses.py).
"""

from __future__ import annotations

import json
import time

from datasette import Forbidden, NotFound, Response

from . import files_bridge, multipart, serve_options, tickets
from .errors import SourceNotFound
from .http import actor_id, direct_storage, read_json_body, s3_storage
from .responses import json_api, unframeable
from .storage import S3Storage
from .thumbnails import thumbnail_quietly

PAGE_TEMPLATE = "datasette_files_s3_upload.html"


async def upload_page(request, datasette):
    """GET /-/files-s3/upload/{source}: the bundled uploader for one s3 source."""
    source = request.url_vars["source_slug"]
    try:
        storage = s3_storage(source)
    except SourceNotFound as ex:
        raise NotFound(str(ex)) from None
    if not await files_bridge.can_upload(datasette, request.actor, source):
        raise Forbidden(f"Permission denied: you need files-upload on source '{source}'")
    if not storage.config.direct_uploads:
        # Its uploads go through Datasette: datasette-files' page keeps its own uploader for that.
        return Response.redirect(datasette.urls.path(f"/-/files/upload/{source}"))
    page = Response.html(
        await datasette.render_template(
            PAGE_TEMPLATE,
            {
                "source": source,
                "uploader_attributes": uploader_attributes(datasette, storage),
                "source_url": datasette.urls.path(f"/-/files/source/{source}"),
            },
            request=request,
        )
    )
    return unframeable(page)


def uploader_attributes(datasette, storage: S3Storage) -> dict[str, str]:
    """The attributes of a `<datasette-files-s3-upload>` element for one source:
    on our upload page and wherever it replaces datasette-files' own uploader."""
    attributes = {
        "source": storage.source,
        "base-url": datasette.urls.path(""),
        "multipart-threshold": str(storage.config.multipart_threshold),
        "checksum": storage.config.checksum,
        # Shown on the page before anything is chosen; prepare still enforces both.
        "max-file-size": str(storage.config.max_file_size),
        # The CORS fix the uploader shows, with this server's config file.
        "cors-command": serve_options.cors_command(datasette, storage.source),
    }
    if storage.config.allowed_content_types:
        attributes["accept"] = ",".join(storage.config.allowed_content_types)
    return attributes


async def ticket_from(request, datasette, data: dict):
    """The authorized source's storage and the multipart ticket the body's token carries."""
    storage = await direct_storage(request, datasette)
    ticket = tickets.read_ticket(datasette, data.get("upload_token"))
    source = request.url_vars["source_slug"]
    tickets.check_ticket_use(ticket, source, actor_id(request), time.time())
    multipart.check_multipart_ticket(ticket, source)
    await tickets.check_same_folder(storage, ticket)
    return storage, ticket


@json_api
async def multipart_create(request, datasette):
    """POST .../multipart/create: start (or resume) a multipart upload."""
    storage = await direct_storage(request, datasette)
    data = await read_json_body(request)
    upload = tickets.parse_upload_request(data)
    who = actor_id(request)
    resumed = None
    if data.get("resume_token"):
        resumed = await multipart.resume(datasette, storage, data["resume_token"], upload, who)
    if resumed is not None:
        ticket, parts = resumed
        token = data["resume_token"]
    else:
        wanted = data.get("checksums") is True
        token, ticket = await multipart.start(datasette, storage, upload, who, wanted)
        parts = []
    plan = multipart.plan_for(ticket)
    return Response.json(
        {
            "ok": True,
            "upload_token": token,
            "resumed": resumed is not None,
            "part_size": plan.part_size,
            "part_count": plan.part_count,
            "expires_at": int(ticket.expires_at),
            "checksums": ticket.checksummed,
            "parts": [multipart.part_json(p) for p in parts],
        }
    )


@json_api
async def multipart_sign(request, datasette):
    """POST .../multipart/sign: presigned PUT URLs for a batch of parts."""
    data = await read_json_body(request)
    storage, ticket = await ticket_from(request, datasette, data)
    multipart.check_still_open(ticket, time.time())
    numbers = multipart.parse_part_numbers(data.get("part_numbers"), multipart.plan_for(ticket))
    sha256s = multipart.parse_part_checksums(data.get("checksums"), ticket, numbers)
    urls, expires_in = await multipart.sign_parts(storage, ticket, numbers, sha256s)
    # The signed headers each PUT must carry, beyond Content-Length.
    headers = {str(n): {"x-amz-checksum-sha256": value} for n, value in sha256s.items()}
    return Response.json({"ok": True, "urls": urls, "headers": headers, "expires_in": expires_in})


@json_api
async def multipart_parts(request, datasette):
    """POST .../multipart/parts: the parts S3 holds for this upload (from ListParts)."""
    data = await read_json_body(request)
    storage, ticket = await ticket_from(request, datasette, data)
    parts = await multipart.s3_parts(storage, ticket)
    return Response.json({"ok": True, "parts": [multipart.part_json(p) for p in parts]})


@json_api
async def multipart_complete(request, datasette):
    """POST .../multipart/complete: check the parts, complete, verify and register.

    Its body carries every part's SHA-256, so it may be larger than other
    endpoints' 64 KiB: up to multipart.COMPLETE_MAX_BODY, room for 10,000 parts.
    """
    data = await read_json_body(request, multipart.COMPLETE_MAX_BODY)
    storage, ticket = await ticket_from(request, datasette, data)
    every_part = range(1, multipart.plan_for(ticket).part_count + 1)
    sha256s = multipart.parse_part_checksums(data.get("checksums"), ticket, every_part)
    row = await multipart.complete(datasette, storage, ticket, sha256s)
    await thumbnail_quietly(datasette, storage, row)
    return Response.json({"ok": True, "file": files_bridge.file_json(datasette, row)}, status=201)


@json_api
async def multipart_abort(request, datasette):
    """POST .../multipart/abort: cancel the upload and abort it in S3."""
    data = await read_json_body(request)
    storage, ticket = await ticket_from(request, datasette, data)
    await multipart.abort(datasette, storage, ticket)
    return Response.json({"ok": True})


@json_api
async def bucket_status(request, datasette):
    """POST .../-/bucket: is the bucket there and open to this source, right now?

    The uploader asks when a request to the bucket got no answer at all: a page
    cannot tell a CORS block from a missing bucket (S3's error answer for one
    carries no CORS headers), but Datasette can. Asked then, S3 is asked again:
    a remembered success may be older than the bucket's removal.
    """
    storage = await direct_storage(request, datasette)
    await read_json_body(request)
    await storage.check_bucket(fresh=True)
    return Response.json({"ok": True})


# datasette-files' pages that show its <datasette-file-upload> for a source.
STOCK_UPLOAD_PAGES = ("/-/files/source/", "/-/files/upload/")


def swapped_stock_page(request) -> tuple[str, S3Storage] | None:
    """(prefix, storage) when `request` is datasette-files' upload or source page
    of an s3 source whose uploader we swap for ours, else None. Sources with
    direct_uploads: false keep the stock element (its proxy flow)."""
    if request is None:
        return None
    prefix = next((p for p in STOCK_UPLOAD_PAGES if request.path.startswith(p)), None)
    if prefix is None:
        return None
    storage = files_bridge.storage_for(request.path.removeprefix(prefix).split("/")[0])
    if not isinstance(storage, S3Storage) or not storage.config.direct_uploads:
        return None
    return prefix, storage


def uploader_swap_script(datasette, request) -> str | None:
    """On datasette-files' upload page and source page of an s3 source, our
    uploader in place of the stock `<datasette-file-upload>`.

    Every browser upload then carries its SHA-256 (and large files go in
    resumable parts): users never pick between two uploaders. Returned for
    Datasette's extra_body_script hook. This classic script runs before the
    page's module scripts, so the stock element is replaced before it is ever
    upgraded; only where it is shown, i.e. when the actor may upload there.
    On the source page, source-page.js adds each uploaded file to its listing.
    """
    swapped = swapped_stock_page(request)
    if swapped is None:
        return None
    prefix, storage = swapped
    attributes = uploader_attributes(datasette, storage)
    modules = ["datasette-files-s3-upload.js"] + (["source-page.js"] if prefix == "/-/files/source/" else [])
    imports = "".join(
        "import(" + js_literal(datasette.urls.static_plugins("datasette_files_s3", module)) + ");"
        for module in modules
    )
    return (
        "document.querySelectorAll('datasette-file-upload').forEach(el => {"
        "const ours = document.createElement('datasette-files-s3-upload');"
        "for (const [name, value] of Object.entries("
        + js_literal(attributes)
        + ")) ours.setAttribute(name, value);"
        "el.replaceWith(ours); });"
        "if (document.querySelector('datasette-files-s3-upload')) {" + imports + "}"
    )


def uploader_stylesheet(datasette, request) -> list[str]:
    """The uploader's stylesheet in the <head> of the stock pages we swap: it
    reserves the uploader's space before its module runs (no layout shift) and
    lets datasette-files' listing wrap at phone widths."""
    if swapped_stock_page(request) is None:
        return []
    return [datasette.urls.static_plugins("datasette_files_s3", "datasette-files-s3-upload.css")]


def js_literal(value) -> str:
    """A JSON string literal that is safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c")
