"""doctor's checks of how single files reach the bucket: does the store take
POST Object (and so which method the source uses), and does it honour
If-None-Match: * on a PUT (so a confirmed key cannot be written again)."""

from __future__ import annotations

import uuid

import httpx

from .doctor import FAIL, PASS, PROBE_BODY, PROBE_DIR, WARN, Check, delete_probes
from .errors import FilesS3Error
from .single_upload import NOT_IMPLEMENTED, post_object_status


async def check_post_object(storage, http: httpx.AsyncClient) -> Check:
    """POST a probe: 501 means the store refuses POST Object (R2, B2), and the source must PUT."""
    if not storage.config.direct_uploads:
        return Check("post", PASS, "direct_uploads is off: browsers never send files to the bucket")
    setting = storage.config.upload_method
    try:
        status = await post_object_status(storage, http)
    except (FilesS3Error, httpx.HTTPError) as ex:
        return Check("post", WARN, f"could not send the probe POST: {ex}; not checked")
    if status < 300:
        method = "PUT" if setting == "put" else "POST"
        return Check(
            "post", PASS, f"the store takes POST Object; upload_method {setting}: single files go by {method}"
        )
    if status != NOT_IMPLEMENTED:
        return Check("post", WARN, f"the store answered the probe POST with HTTP {status}: not checked")
    if setting == "post":
        return Check(
            "post",
            FAIL,
            "the store refuses POST Object (501): every file below multipart_threshold fails",
            "set upload_method: auto (or put) for this source",
        )
    switch = "from the first upload on" if setting == "auto" else "always"
    return Check(
        "post",
        PASS,
        f"the store refuses POST Object (501); upload_method {setting}: single files go by PUT {switch}. "
        "datasette-files' own form uploader cannot work here; the bundled uploader does",
    )


async def check_conditional_writes(storage, http: httpx.AsyncClient) -> Check:
    """PUT the probe twice through one presigned URL that signs If-None-Match: *."""
    if not storage.config.direct_uploads:
        return Check("conditional", PASS, "direct_uploads is off: browsers never send files to the bucket")
    path = f"{PROBE_DIR}/{uuid.uuid4().hex}-put.txt"
    try:
        plan, _ = await storage.presigned_put(path, "text/plain", len(PROBE_BODY), 60)
        first = await http.put(plan.upload_url, content=PROBE_BODY, headers=plan.upload_headers)
        second = await http.put(plan.upload_url, content=PROBE_BODY, headers=plan.upload_headers)
    except (FilesS3Error, httpx.HTTPError) as ex:
        return Check("conditional", WARN, f"could not send the probe PUT: {ex}; not checked")
    finally:
        await delete_probes(storage, path)
    if first.status_code >= 300:
        status = FAIL if storage.config.upload_method == "put" else WARN
        return Check(
            "conditional",
            status,
            f"the store refused a presigned PUT (HTTP {first.status_code}): not checked",
        )
    if second.status_code == 412:
        return Check(
            "conditional",
            PASS,
            "the store honours If-None-Match: * (a second PUT to the key was refused): "
            "a confirmed key cannot be written again through its own URLs",
        )
    return Check(
        "conditional",
        WARN,
        f"the store ignores If-None-Match: * (a second PUT answered HTTP {second.status_code}): until its "
        "URL expires a key can be written again; downloads compare size and ETag until then",
    )
