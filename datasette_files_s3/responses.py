"""Answering a request to one of our views: the one map from our errors to
responses, the decorators that apply it, and the headers our pages carry.

Every error becomes Datasette's JSON error body `{"ok": false, "errors": [...]}`
plus `retryable`, with a 4xx status for the client's mistakes and 502/503 when
S3, the credentials broker or Datasette's internal database fails; never a 500.
"""

from __future__ import annotations

import functools
import logging
import sqlite3

from datasette import Response
from datasette.database import QueryInterrupted
from datasette.utils import error_body

from . import files_bridge
from .errors import AlreadyCompleted, FilesS3Error

logger = logging.getLogger("datasette_files_s3")

# What a failed read or write of Datasette's internal database raises.
INTERNAL_DATABASE_ERRORS = (sqlite3.Error, QueryInterrupted)
# Every exception error_answer turns into a response.
ANSWERED_ERRORS = (FilesS3Error, *INTERNAL_DATABASE_ERRORS)
NOTHING_CHANGED = "nothing was changed; "


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
