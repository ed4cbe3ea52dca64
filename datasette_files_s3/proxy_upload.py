"""The one route that carries file bytes through Datasette: datasette-files'
`POST /-/files/upload/{source}/-/upload`, guarded for s3 sources.

datasette-files 0.1a3's own view checks no permission and reads the whole
body (up to the source's max_file_size, 5 TiB here) before it looks at the
upload token. In front of it, for s3 sources:

- a direct-upload source answers at once, before a byte of the body is read:
  its files go straight to the bucket, never through this route;
- a proxy source (`direct_uploads: false`) checks the actor's files-upload
  permission and the upload token first, then lets datasette-files read at
  most what the token allows: the size declared at prepare (or max_file_size).

The token has to be known before the body is read, so prepare's `upload_url`
carries it in its query string (`token_in_upload_url`); the form field that
datasette-files reads stays as it was.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from datasette import Response
from datasette.utils.asgi import Request

from . import files_bridge
from .around_upstream_views import receiving_only, whole_reads_refused
from .errors import BodyTooLarge, UploadForbidden, UploadRejected
from .http import actor_id, require_upload_permission
from .responses import ANSWERED_ERRORS, error_answer, error_response, post_only
from .storage import S3Storage

# Room for the form's boundaries, part headers and the upload_token field
# around the file's own bytes.
FORM_OVERHEAD = 64 * 1024
TOKEN_PARAMETER = "upload_token"


def token_in_upload_url(prepared: Response) -> Response:
    """datasette-files' prepare answer with the token added to `upload_url`'s
    query, where the upload route can check it before reading the body."""
    if prepared.status != 200:
        return prepared
    data = json.loads(prepared.body)
    token = data.get("upload_token")
    if not isinstance(token, str):
        return prepared
    separator = "&" if "?" in data["upload_url"] else "?"
    data["upload_url"] += f"{separator}{TOKEN_PARAMETER}={quote(token)}"
    return Response.json(data, status=prepared.status, headers=prepared.headers)


def allowed_file_bytes(token, storage: S3Storage) -> int:
    """The most the file may hold for this token: the size declared at
    prepare (or the source's max_file_size)."""
    declared = token.size
    if isinstance(declared, int) and not isinstance(declared, bool) and 0 <= declared:
        return min(declared, storage.config.max_file_size)
    return storage.config.max_file_size


def capped(request, limit: int) -> Request:
    """The request, its body refused (BodyTooLarge) once more than `limit`
    bytes have arrived: read as it streams, never past the limit."""
    received = 0

    async def receive():
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise BodyTooLarge(f"The upload is larger than its token allows: at most {limit} bytes")
        return message

    return Request(request.scope, receive)


async def checked_token(datasette, request, storage: S3Storage):
    """The upload token from the query, once it and the actor may send bytes."""
    source = request.url_vars["source_slug"]
    await require_upload_permission(datasette, request, source)
    value = request.args.get(TOKEN_PARAMETER)
    if not value:
        raise UploadRejected(
            f"Send the file to the upload_url that prepare gave: it carries ?{TOKEN_PARAMETER}=..."
        )
    token = files_bridge.proxy_upload_token(value)
    if token is None or token.source_slug != source:
        raise UploadRejected("Invalid or expired upload token: prepare the upload again")
    if token.content_received:
        raise UploadRejected("Content already uploaded for this token")
    uploader = (token.actor or {}).get("id")
    if (str(uploader) if uploader is not None else None) != actor_id(request):
        raise UploadForbidden("This upload token was prepared by another actor")
    return token


@post_only
async def upload_content(request, datasette):
    """POST /-/files/upload/{source}/-/upload: bytes through Datasette, proxy sources only."""
    source = request.url_vars["source_slug"]
    storage = files_bridge.storage_for(source)
    if not isinstance(storage, S3Storage):
        return await files_bridge.stock_upload_content(request, datasette)
    try:
        if storage.config.direct_uploads:
            raise UploadRejected(
                f"Source '{source}' takes uploads straight to the bucket, not through Datasette: "
                f"send the file to the upload_url that /-/files/upload/{source}/-/prepare gives"
            )
        token = await checked_token(datasette, request, storage)
        file_limit = allowed_file_bytes(token, storage)
        limit = file_limit + FORM_OVERHEAD  # the form around the file
        declared_length = request.headers.get("content-length", "")
        if declared_length.isdigit() and int(declared_length) > limit:
            raise BodyTooLarge(f"The upload is larger than its token allows: at most {limit} bytes")
    except ANSWERED_ERRORS as ex:
        return await error_answer(datasette, ex)
    try:
        # Its complete reads the whole object for a thumbnail; thumbnails.py makes it instead.
        # datasette-files writes for the form's upload_token: only to the checked one's key.
        with whole_reads_refused(), receiving_only(token.path, file_limit):
            return await files_bridge.stock_upload_content(capped(request, limit), datasette)
    except UploadRejected as ex:  # BodyTooLarge, or the form's token is another one
        return error_response(ex)
