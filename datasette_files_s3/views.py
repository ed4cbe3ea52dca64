"""HTTP endpoints: parse the request, check who is asking, call uploads.py, answer.

Our routes sit in front of datasette-files' own for the same paths; requests
for sources that are not `storage: s3` are handed straight to datasette-files.
Every error is a JSON body `{"ok": false, "errors": [...]}` with a 4xx status
for the client's mistakes and 502/503 when S3 or the credentials broker fails.
"""

from __future__ import annotations

import functools
import json
import time

from datasette import Forbidden, Response
from datasette.utils.asgi import Request

from . import delete_views, files_bridge, single_upload, tickets, uploads
from .around_upstream_views import limited_reads_at_most, whole_reads_refused
from .errors import UploadRejected
from .http import (
    actor_id,
    authorized_storage,
    load_json,
    parse_json_object,
    read_body_capped,
    read_json_body,
    replaying,
    require_upload_permission,
)
from .proxy_upload import token_in_upload_url
from .responses import ANSWERED_ERRORS, error_answer, error_response, json_api, post_only, unframeable
from .storage import S3Storage
from .thumbnails import thumbnail_eligible, thumbnail_quietly


def s3_sources_only(stock_view, check_bucket: bool = False, adjust_stock_answer=None):
    """Route s3 sources to our view; other sources, and s3 sources with
    direct_uploads: false (the proxy fallback), to datasette-files' own.

    With `check_bucket`, a proxy-fallback request is answered with the bucket's
    problem, if it has one, before datasette-files' view takes it: its prepare
    never contacts S3, so the upload would otherwise fail only once the bytes
    had been sent. `adjust_stock_answer`, if given, rewrites datasette-files'
    answer for those proxy sources.
    """

    def decorate(view):
        @functools.wraps(view)
        async def wrapper(request, datasette):
            storage = files_bridge.storage_for(request.url_vars["source_slug"])
            not_ours = storage is not None and not isinstance(storage, S3Storage)
            if not_ours:
                return await stock_view(request, datasette)
            if isinstance(storage, S3Storage) and not storage.config.direct_uploads:
                try:
                    request = await checked_for_stock(request, storage)
                    if check_bucket:
                        # Only someone who may upload learns about the bucket.
                        await require_upload_permission(datasette, request, storage.source)
                        await storage.check_bucket()
                except ANSWERED_ERRORS as ex:
                    return await error_answer(datasette, ex)
                # 0.1a3's complete would read the whole object for a thumbnail and
                # decode it on the event loop; thumbnails.py makes it instead.
                # Later ones make it themselves, bounded: within thumbnail_max_size.
                with whole_reads_refused(), limited_reads_at_most(storage.config.thumbnail_max_size):
                    answer = await stock_view(request, datasette)
                return adjust_stock_answer(answer) if adjust_stock_answer else answer
            return await view(request, datasette)

        return wrapper

    return decorate


async def checked_for_stock(request, storage: S3Storage) -> Request:
    """The request, its body replayed, once it is safe for datasette-files' own view.

    datasette-files 0.1a3's prepare and complete answer 500 to a JSON body that
    is not an object (`null`, `[]`), is nested too deeply or holds a lone
    surrogate, or whose `filename` / `upload_token` is not a string, and accept
    filenames such as ".."; its prepare checks no type rule and stores any
    content_type, CRLF and all. For our proxy-mode sources a prepare is held to
    the same rules as a direct upload (name, bare MIME type, size,
    max_file_size, allowed_content_types), and datasette-files is handed the
    cleaned type.
    """
    body = await read_body_capped(request)
    data = parse_json_object(body)
    for name in ("filename", "content_type", "upload_token"):
        if name in data and not isinstance(data[name], str):
            raise UploadRejected(f"{name} must be a string")
    if "filename" in data:
        upload = tickets.parse_upload_request(data)
        tickets.check_request_allowed(storage.config, upload, single_request=False)
        data.update(filename=upload.filename, content_type=upload.content_type)
        body = json.dumps(data).encode("utf-8")
    return replaying(request, body)


@post_only
async def file_update(request, datasette):
    """POST /-/files/{id}/-/update: datasette-files' own, behind our JSON check.

    Its json.loads lets RecursionError through and a lone surrogate in
    search_text fails its SQLite write: both were 500s. Those bodies get a 400
    here (before its permission check, which reveals nothing); every other
    body, valid or not, is its to answer.
    """
    body = await request.post_body()
    try:
        load_json(body)
    except UploadRejected as ex:
        return error_response(ex)
    except ValueError:
        pass  # not JSON: datasette-files says so itself
    return await files_bridge.stock_file_update(replaying(request, body), datasette)


@s3_sources_only(
    files_bridge.stock_upload_prepare, check_bucket=True, adjust_stock_answer=token_in_upload_url
)
@json_api
async def upload_prepare(request, datasette):
    """POST /-/files/upload/{source}/-/prepare: sign a direct upload to the bucket."""
    storage = await authorized_storage(request, datasette)
    data = await read_json_body(request)
    return Response.json(await prepared_answer(datasette, storage, data, actor_id(request)))


async def prepared_answer(datasette, storage, data: dict, actor: str | None) -> dict:
    """One file's prepare, from its JSON object: the token and how to send the bytes.

    Shared by prepare and the bundled uploader's prepare-batch (batch_views.py).
    """
    upload = tickets.parse_upload_request(data)
    # The bundled uploader can send a PUT; datasette-files' own only a form POST.
    accepts_put = data.get("accepts_put") is True
    token, instructions, put_fallback = await uploads.plan_direct_upload(
        datasette, storage, upload, actor, accepts_put=accepts_put
    )
    answer = {"ok": True, "upload_token": token, **instructions_json(instructions)}
    if put_fallback:
        answer["put_fallback"] = instructions_json(put_fallback)
    return answer


# How to send the bytes: URL, method, headers and (for a POST) form fields.
INSTRUCTION_FIELDS = ("upload_url", "upload_method", "upload_headers", "upload_fields")


def instructions_json(instructions) -> dict:
    """The UploadInstructions' INSTRUCTION_FIELDS, as the JSON answer carries them."""
    return {field: getattr(instructions, field) for field in INSTRUCTION_FIELDS}


@s3_sources_only(files_bridge.stock_upload_complete)
@json_api
async def upload_complete(request, datasette):
    """POST /-/files/upload/{source}/-/complete: verify the object and register it."""
    storage = await authorized_storage(request, datasette)
    data = await read_json_body(request)
    return Response.json(await completed_answer(datasette, storage, data, actor_id(request)), status=201)


async def completed_answer(datasette, storage, data: dict, actor: str | None) -> dict:
    """One file's complete, from its JSON object: verify the object, register it, its file JSON.

    Shared by complete and the bundled uploader's complete-batch (batch_views.py).
    """
    source = storage.source
    ticket = tickets.read_ticket(datasette, data.get("upload_token"))
    tickets.check_ticket_use(ticket, source, actor, time.time())
    if not ticket.single_request:
        raise UploadRejected(
            f"This token is for a multipart upload: complete it at /-/files-s3/upload/{source}/-/multipart/complete"
        )
    await tickets.check_same_folder(storage, ticket)
    if data.get("post_refused") is True:
        await single_upload.note_post_refused(storage)
    row = await uploads.confirm_upload(datasette, storage, ticket)
    await thumbnail_quietly(datasette, storage, row)
    return {"ok": True, "file": files_bridge.file_json(datasette, row)}


async def upload_page(request, datasette):
    """GET /-/files/upload/{source}: datasette-files' upload page (our uploader
    takes its place on s3 sources), which no other site may frame."""
    return unframeable(await files_bridge.stock_upload_page(request, datasette))


async def browsable_s3_file(request, datasette):
    """(row, storage) for an s3 file the actor may browse; None when the id
    is not an s3 file (datasette-files' own view answers those)."""
    row = await files_bridge.file_record(datasette, request.url_vars["file_id"])
    storage = files_bridge.storage_for(row["source_slug"]) if row else None
    if not isinstance(storage, S3Storage):
        return None
    if not await files_bridge.can_browse(datasette, request.actor, row["source_slug"]):
        raise Forbidden("Permission denied: files-browse on source " + row["source_slug"])
    return row, storage


async def file_thumbnail(request, datasette):
    """GET /-/files/{id}/thumbnail: for s3 files, never read a large object."""
    found = await browsable_s3_file(request, datasette)
    if found is None:
        return await files_bridge.stock_file_thumbnail(request, datasette)
    row, storage = found
    if files_bridge.makes_thumbnails_safely():
        # datasette-files reads it through our bounded read_file_limited and
        # decodes it in its subprocess; our thumbnail_max_size still decides
        # which files are read at all.
        if thumbnail_eligible(row, storage.config.thumbnail_max_size):
            return await files_bridge.stock_file_thumbnail(request, datasette)
    elif await thumbnail_quietly(datasette, storage, row):
        # datasette-files serves the cached thumbnail; it never reads the object.
        return await files_bridge.stock_file_thumbnail(request, datasette)
    return files_bridge.icon_response(request, row["filename"], row["content_type"])


def storage_errors_as_json(stock_view):
    """Wrap a datasette-files view that calls the storage: an S3 or credentials
    failure becomes a JSON 502/503 naming the cause instead of a 500."""

    @functools.wraps(stock_view)
    async def wrapper(request, datasette):
        try:
            return await stock_view(request, datasette)
        except ANSWERED_ERRORS as ex:
            # datasette-files' own views may have changed something already
            # (delete removes the object before its rows), so promise nothing.
            return await error_answer(datasette, ex, outcome="")

    return wrapper


file_delete = post_only(
    delete_views.answer_forms_with_a_page(storage_errors_as_json(files_bridge.stock_file_delete))
)

# GET shows datasette-files' CSV import page, POST starts an import: both read
# the whole file, which S3Storage.read_file bounds by max_read_size (a 413 here).
file_import = storage_errors_as_json(files_bridge.stock_file_import)


@storage_errors_as_json
async def file_download(request, datasette):
    """GET /-/files/{id}/download: for s3 files, a redirect to a presigned GET.

    datasette-files' own view hands the storage only the path; ours also
    passes the recorded content type, so a file named page.txt but recorded
    as text/html is still served as an attachment the browser will not render.
    """
    found = await browsable_s3_file(request, datasette)
    if found is None:
        return await files_bridge.stock_file_download(request, datasette)
    row, storage = found
    await uploads.check_unchanged(datasette, storage, row, time.time())  # ObjectChanged: a 409
    url = await storage.download_url(row["path"], content_type=row["content_type"])
    return Response.redirect(url, status=302)
