"""Which single-request method a source uses: a form POST or a presigned PUT.

`upload_method: auto` (the default) starts with POST, which needs no CORS
preflight, and switches to PUT once the store has answered POST Object with
501 Not Implemented (Cloudflare R2 and Backblaze B2 do). The bundled uploader
is given both for the same key and falls back on its own; it then tells
complete, and Datasette checks the 501 itself (a POST of its own, once per
process) before the source switches: a client cannot flip a source by saying so.
Once a POST has been confirmed on the source, the store is known to take POST
Object and the PUT is no longer signed beside it (`note_post_accepted`).
"""

from __future__ import annotations

import httpx

from .doctor_probe import post_probe
from .errors import FilesS3Error, UploadRejected
from .s3_presign import SIGNED_PUT_CACHE_CONTROL

NOT_IMPLEMENTED = 501
PROBE_TIMEOUT = 10


def method_for(storage) -> str:
    """Which method, "post" or "put", the next single-request upload to this source is signed for."""
    chosen = storage.config.upload_method
    if chosen == "auto":
        return "put" if storage.post_refused else "post"
    return chosen


def signs_put_fallback(storage, accepts_put: bool) -> bool:
    """Whether a POST is signed with a PUT for the same key beside it: for a client
    that `accepts_put`, with `auto`, until a POST is known to have reached this store."""
    return accepts_put and storage.config.upload_method == "auto" and not storage.post_accepted


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


def note_post_accepted(storage, head: dict) -> None:
    """A POST ticket's object was confirmed: if the form POST wrote it, the store takes
    POST Object, and that settles for good (R2 and B2 refuse every POST).

    The object itself says which request wrote it, not the client: every PUT we
    sign carries Cache-Control (SIGNED_PUT_CACHE_CONTROL), which the store keeps
    and a POST's policy never names. An object without it came by the POST.
    """
    if head.get("CacheControl") != SIGNED_PUT_CACHE_CONTROL:
        storage.post_accepted = True
