"""The HTTP toolkit our view modules share: reading JSON bodies, knowing who
asks and what they may do, and the one map from our errors to responses.

Every error becomes Datasette's JSON error body `{"ok": false, "errors": [...]}`
plus `retryable`, with a 4xx status for the client's mistakes and 502/503 when
S3, the credentials broker or Datasette's internal database fails; never a 500.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3

from datasette import Response
from datasette.database import QueryInterrupted
from datasette.utils import error_body
from datasette.utils.asgi import Request

from . import files_bridge
from .errors import (
    AlreadyCompleted,
    BodyTooLarge,
    FilesS3Error,
    SourceNotFound,
    UploadForbidden,
    UploadRejected,
)
from .storage import S3Storage

logger = logging.getLogger("datasette_files_s3")

MAX_JSON_BODY = 64 * 1024
# What a failed read or write of Datasette's internal database raises.
INTERNAL_DATABASE_ERRORS = (sqlite3.Error, QueryInterrupted)
# Every exception error_answer turns into a response.
ANSWERED_ERRORS = (FilesS3Error, *INTERNAL_DATABASE_ERRORS)
NOTHING_CHANGED = "nothing was changed; "


# --- who is asking ----------------------------------------------------------


def actor_id(request) -> str | None:
    """The requesting actor's id as a string, or None when anonymous."""
    actor = request.actor or {}
    return str(actor["id"]) if actor.get("id") is not None else None


def s3_storage(source: str) -> S3Storage:
    """The S3Storage configured for a source, or SourceNotFound."""
    storage = files_bridge.storage_for(source)
    if not isinstance(storage, S3Storage):
        raise SourceNotFound(f"Source not found: '{source}' is not an s3 source here")
    return storage


async def require_upload_permission(datasette, request, source: str) -> None:
    """UploadForbidden unless the actor holds files-upload on the source."""
    if not await files_bridge.can_upload(datasette, request.actor, source):
        raise UploadForbidden(f"Permission denied: you need files-upload on source '{source}'")


async def authorized_storage(request, datasette) -> S3Storage:
    """The s3 source named in the URL, once the actor is known to hold files-upload on it."""
    source = request.url_vars["source_slug"]
    storage = s3_storage(source)
    await require_upload_permission(datasette, request, source)
    return storage


# --- request bodies -----------------------------------------------------------


def load_json(body: bytes):
    """json.loads, refusing (UploadRejected) what it accepts but Python cannot use.

    That is nesting deeper than the recursion limit, and lone surrogates
    ("\\ud800"): valid JSON escapes but no character, so no key, log line or
    database row can hold them. Text that is not JSON at all raises ValueError.
    """
    try:
        data = json.loads(body)
        # Encoding it back finds a lone surrogate wherever it hides.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise UploadRejected("Body is nested too deeply: send a flat JSON object") from None
    except UnicodeEncodeError:
        raise UploadRejected(
            "Body contains a lone surrogate (an escape such as \\ud800 that is no character): send valid text"
        ) from None
    return data


def parse_json_object(body: bytes) -> dict:
    """The request body as a JSON object, or UploadRejected saying what is wrong."""
    try:
        data = load_json(body)
    except ValueError:  # also UnicodeDecodeError: bytes that are not UTF-8
        raise UploadRejected('Body must be valid JSON, e.g. {"filename": "a.txt", "size": 3}') from None
    if not isinstance(data, dict):
        raise UploadRejected("Body must be a JSON object")
    return data


async def read_json_body(request, max_bytes: int = MAX_JSON_BODY) -> dict:
    """A JSON object from a POST with Content-Type application/json, read with a size cap.

    Requiring application/json means a cross-site HTML form cannot drive these
    endpoints: a browser sends that type cross-origin only after a CORS preflight.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UploadRejected("Send the body as JSON with the header Content-Type: application/json")
    return parse_json_object(await read_body_capped(request, max_bytes))


async def read_body_capped(request, max_bytes: int = MAX_JSON_BODY) -> bytes:
    """The request body, refusing (413) anything over `max_bytes` as it arrives."""
    body = bytearray()
    more_body = True
    while more_body:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            break
        body += message.get("body", b"")
        more_body = message.get("more_body", False)
        if len(body) > max_bytes:
            raise BodyTooLarge(f"Request body is too large: at most {max_bytes} bytes of JSON")
    return bytes(body)


def replaying(request, body: bytes) -> Request:
    """The same request, its body (already read) to be read again by another view."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, replay)


# --- pages ------------------------------------------------------------------

# Our upload pages hold buttons that start, pause and cancel uploads: no other
# site may frame them and trick a click (clickjacking).
NO_FRAMING = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


def unframeable(response: Response) -> Response:
    """The response, with headers that forbid every site from framing it."""
    response.headers.update(NO_FRAMING)
    return response


# --- errors to responses ------------------------------------------------------


async def error_answer(datasette, ex: Exception, outcome: str = NOTHING_CHANGED) -> Response:
    """The response for one of ANSWERED_ERRORS: the single map from our errors to HTTP.

    `outcome` is what a failed internal-database write leaves behind, for the
    message: our own endpoints change nothing then; datasette-files' views may
    have changed something already and pass "".
    """
    if isinstance(ex, AlreadyCompleted):
        return await already_completed(datasette, ex)
    if isinstance(ex, FilesS3Error):
        if ex.status >= 500:
            logger.warning("%s%s", ex, f" [{ex.log_detail}]" if ex.log_detail else "")
        return error_response(ex)
    if isinstance(ex, INTERNAL_DATABASE_ERRORS):
        return internal_database_failed(ex, outcome)
    raise ex


def post_only(view):
    """State changes only on POST: any other method (GET, HEAD, ...) gets 405
    and the view never runs.

    A cross-site page can make a browser send GET with the login cookie (a
    link, an <img>, a top-level navigation: SameSite=Lax allows it), but not a
    cross-site POST with it.
    """

    @functools.wraps(view)
    async def wrapper(request, datasette):
        if request.method != "POST":
            return Response.error(
                f"Use POST: {request.method} changes nothing here", 405, headers={"Allow": "POST"}
            )
        return await view(request, datasette)

    return wrapper


def json_api(view):
    """POST-only JSON endpoint: turns our exceptions into JSON errors, never a 500."""

    @post_only
    @functools.wraps(view)
    async def wrapper(request, datasette):
        try:
            return await view(request, datasette)
        except ANSWERED_ERRORS as ex:
            return await error_answer(datasette, ex)

    return wrapper


def error_response(ex: FilesS3Error) -> Response:
    """Datasette's JSON error body for one of our errors, plus `retryable`:
    whether sending the same request again may succeed (a missing bucket is a
    502 that will not heal; an unreachable endpoint is a 503 that may)."""
    body = error_body(ex.messages, ex.status)
    body["retryable"] = ex.retryable
    return Response.json(body, status=ex.status, headers=ex.headers)


async def already_completed(datasette, ex: AlreadyCompleted) -> Response:
    """409 for a completed token, with the file it registered (if it can be read)."""
    body = error_body(ex.messages, ex.status)
    try:
        row = await files_bridge.file_record(datasette, ex.file_id)
    except INTERNAL_DATABASE_ERRORS:
        row = None  # the refusal stands; only the courtesy of naming the file is lost
    if row is not None:
        body["file"] = files_bridge.file_json(datasette, row)
    return Response.json(body, status=ex.status)


def internal_database_failed(ex: Exception, outcome: str = NOTHING_CHANGED) -> Response:
    """503 for a failed read or write of Datasette's internal database, or one
    that ran past sql_time_limit_ms (a permission check waiting behind a slow
    commit on a busy machine: QueryInterrupted).

    Each of our own writes is one transaction, so for our endpoints a failure
    leaves nothing half done and the same request can simply be sent again.
    """
    message = f"Datasette's internal database failed ({type(ex).__name__}): {outcome}try again"
    # SQLite's own words ("database is locked") help; QueryInterrupted's text
    # would add the query and its parameters, which have no place in a log.
    logger.warning("%s: %s", message, ex if isinstance(ex, sqlite3.Error) else "interrupted")
    return Response.json({**error_body([message], 503), "retryable": True}, status=503)
