"""Several small files' prepares, or completes, in one request: the bundled uploader's batches.

A small file costs three round trips (prepare at Datasette, the POST to the
bucket, complete at Datasette), and a browser opens at most six connections
to Datasette: on a link with real round-trip time, Datasette's two trips per
file decided how many small files a second went up (docs/benchmarks.md, "On a
real link"). These endpoints take up to MAX_BATCH_FILES files at once and do
for each exactly what prepare and complete do for one (views.prepared_answer,
views.completed_answer): the same permission check, limits, tickets and
registration.

Each file is answered on its own, in the order sent: the single endpoint's
JSON for it, or its error body (`ok: false`, `errors`, `status`, `retryable`,
and `retry_after` in seconds for a 429), so one file's refusal never fails the
others. The request's own HTTP status says only whether the batch itself was
taken: a 4xx for a body that is not a batch, or a source or actor that may not
use it.
"""

from __future__ import annotations

import asyncio
import json

from datasette import Response

from .errors import UploadRejected
from .http import actor_id, direct_storage, read_json_body
from .responses import ANSWERED_ERRORS, error_answer, json_api
from .views import completed_answer, prepared_answer

MAX_BATCH_FILES = 50
# Room for MAX_BATCH_FILES upload tokens at their longest (tickets.LONGEST_TOKEN).
MAX_BATCH_BODY = MAX_BATCH_FILES * 10 * 1024


@json_api
async def prepare_batch(request, datasette):
    """POST /-/files-s3/upload/{source}/-/prepare-batch: sign several direct uploads.

    Body: {"files": [{"filename", "content_type", "size", "sha256"?, "accepts_put"?}, ...]}.
    """
    storage, files = await batch_from(request, datasette)
    actor = actor_id(request)
    answers = await each_file(datasette, files, lambda data: prepared_answer(datasette, storage, data, actor))
    return Response.json({"ok": True, "files": answers})


@json_api
async def complete_batch(request, datasette):
    """POST /-/files-s3/upload/{source}/-/complete-batch: verify and register several uploads.

    Body: {"files": [{"upload_token", "post_refused"?}, ...]}.
    """
    storage, files = await batch_from(request, datasette)
    actor = actor_id(request)
    answers = await each_file(
        datasette, files, lambda data: completed_answer(datasette, storage, data, actor)
    )
    return Response.json({"ok": True, "files": answers})


async def batch_from(request, datasette) -> tuple[object, list]:
    """The authorized source's storage and the body's list of files, or why the batch is refused."""
    storage = await direct_storage(request, datasette)
    data = await read_json_body(request, MAX_BATCH_BODY)
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise UploadRejected(
            'files is required: a list of the files\' JSON objects, e.g. {"files": [{"filename": "a.txt", '
            '"content_type": "text/plain", "size": 3}]}'
        )
    if len(files) > MAX_BATCH_FILES:
        raise UploadRejected(
            f"A batch holds at most {MAX_BATCH_FILES} files and this one has {len(files)}: send the rest in another"
        )
    return storage, files


async def each_file(datasette, files: list, answer_one) -> list[dict]:
    """Each file's answer, in order; a file's error becomes its own answer, not the batch's.

    The files run concurrently: their pending rows, and their registrations,
    share writes (database.GroupedWrites) and their HEADs the gateway's thread pool.
    """

    async def one(index: int, data) -> dict:
        try:
            if not isinstance(data, dict):
                raise UploadRejected(f"files[{index}] must be a JSON object")
            return await answer_one(data)
        except ANSWERED_ERRORS as ex:
            return await error_item(datasette, ex)

    return list(await asyncio.gather(*(one(index, data) for index, data in enumerate(files))))


async def error_item(datasette, ex: Exception) -> dict:
    """One file's refusal: the body the single endpoint would have answered
    (responses.error_answer, the one map from errors to answers), with its
    Retry-After, if any, as `retry_after`."""
    response = await error_answer(datasette, ex)
    item = json.loads(response.body)
    item["status"] = response.status
    retry_after = response.headers.get("Retry-After")
    if retry_after is not None:
        item["retry_after"] = int(retry_after)
    return item
