"""Reading a request to one of our views: who is asking and whether they may
upload there, and its JSON body, size-capped and checked.

Answering it, and the one map from our errors to responses, is responses.py.
"""

from __future__ import annotations

import json

from datasette.utils.asgi import Request

from . import files_bridge
from .errors import BodyTooLarge, SourceNotFound, UploadForbidden, UploadRejected
from .storage import S3Storage

MAX_JSON_BODY = 64 * 1024


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


async def direct_storage(request, datasette) -> S3Storage:
    """The authorized source's storage, if browsers may send its files to the bucket.

    `direct_uploads: false` is what an admin sets so that every upload goes
    through Datasette (the README's answer to a store that does not enforce
    POST policies): no part URL may open the bucket to browsers there.
    """
    storage = await authorized_storage(request, datasette)
    if not storage.config.direct_uploads:
        source = storage.source
        raise UploadRejected(
            f"Source '{source}' takes uploads through Datasette (direct_uploads: false), not "
            f"straight to the bucket: upload at /-/files/upload/{source} "
            f"(or prepare each file at /-/files/upload/{source}/-/prepare)"
        )
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
