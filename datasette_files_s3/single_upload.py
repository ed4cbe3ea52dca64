"""Which single-request method a source uses: a form POST or a presigned PUT.

`upload_method: auto` (the default) starts with POST, which needs no CORS
preflight, and switches to PUT once the store has answered POST Object with
501 Not Implemented (Cloudflare R2 and Backblaze B2 do). The bundled uploader
is given both for the same key and falls back on its own; it then tells
complete, and Datasette checks the 501 itself (a POST of its own, once per
process) before the source switches: a client cannot flip a source by saying so.
"""

from __future__ import annotations

import httpx

from .doctor_probe import post_probe
from .errors import FilesS3Error, UploadRejected

NOT_IMPLEMENTED = 501
PROBE_TIMEOUT = 10


def method_for(storage) -> str:
    """Which method, "post" or "put", the next single-request upload to this source is signed for."""
    chosen = storage.config.upload_method
    if chosen == "auto":
        return "put" if storage.post_refused else "post"
    return chosen


def refuse_form_uploader(storage) -> None:
    """UploadRejected for a client that can only POST a form (datasette-files' own
    uploader) when this source signs PUTs: that POST could never succeed."""
    raise UploadRejected(
        f"Source '{storage.source}' uploads by presigned PUT, because its store does not accept "
        "form uploads (POST Object), and this uploader can only send a form: use the bundled "
        f"uploader at /-/files-s3/upload/{storage.source}"
    )


async def note_post_refused(storage) -> None:
    """A client says the store answered its POST with 501: with `auto`, check and
    switch the source to PUT. Failing to check changes nothing and fails nothing."""
    if storage.config.upload_method != "auto" or storage.post_refused:
        return
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as http:
            status = await post_probe(storage, http)
    except (FilesS3Error, httpx.HTTPError):
        return
    storage.post_refused = status == NOT_IMPLEMENTED
