"""doctor's checks of how single files reach the bucket: does the store take
POST Object (and so which method the source uses), does it enforce our POST
policy's conditions and refuse fields the policy does not name, and does it
honour If-None-Match: * on a PUT (so a confirmed key cannot be written again)."""

from __future__ import annotations

import uuid

import httpx

from .doctor_probe import FAIL, PASS, PROBE_BODY, PROBE_DIR, WARN, Check, delete_probes, post_probe, try_post
from .errors import FilesS3Error
from .single_upload import NOT_IMPLEMENTED


async def check_post_object(storage, http: httpx.AsyncClient) -> Check:
    """POST a probe: 501 means the store refuses POST Object (R2, B2), and the source must PUT."""
    if not storage.config.direct_uploads:
        return Check("post", PASS, "direct_uploads is off: browsers never send files to the bucket")
    setting = storage.config.upload_method
    try:
        status = await post_probe(storage, http)
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


# What a store that ignores POST policy conditions lets any user with upload permission do.
POLICY_NOT_ENFORCED = (
    "on this store any user with upload permission can write any size, and overwrite other keys in "
    "the bucket until confirm catches it, or forever for keys we never confirm"
)


async def check_policy(storage, http: httpx.AsyncClient) -> Check:
    """Does the store enforce our POST policy? Break it twice: one byte over the size, another key."""
    if not storage.config.direct_uploads:
        return Check(
            "policy", PASS, "not needed: direct_uploads is off, so browsers never POST to the bucket"
        )
    connection = await storage.connection()
    name = uuid.uuid4().hex
    signed, other = f"{PROBE_DIR}/{name}-signed.txt", f"{PROBE_DIR}/{name}-other.txt"
    plan, _ = await storage.presigned_post(signed, "text/plain", len(PROBE_BODY), 60)
    fields = plan.upload_fields
    try:
        over = await try_post(http, plan.upload_url, fields, PROBE_BODY + b"!")
        elsewhere = await try_post(
            http, plan.upload_url, {**fields, "key": connection.key(other)}, PROBE_BODY
        )
    except httpx.HTTPError as ex:
        return Check("policy", WARN, f"could not send the probe POST ({type(ex).__name__}): not checked")
    finally:
        await delete_probes(storage, signed, other)  # whatever the store let in
    taken = [
        what
        for what, (accepted, _) in (
            ("one byte over the signed size", over),
            ("one to a key it was not signed for", elsewhere),
        )
        if accepted
    ]
    if taken:
        return Check(
            "policy",
            WARN,
            f"the store accepted a POST {' and '.join(taken)}: it does not enforce POST policies, so "
            + POLICY_NOT_ENFORCED,
            "use a store that enforces POST policies (AWS S3 does), or set direct_uploads: false "
            "so uploads go through Datasette",
        )
    return Check(
        "policy",
        PASS,
        f"the store refused a POST one byte over the signed size ({over[1]}) "
        f"and one to a key it was not signed for ({elsewhere[1]})",
    )


UNNAMED_FIELD = "x-amz-meta-unsigned-probe"


async def check_unnamed_fields(storage, http: httpx.AsyncClient) -> Check:
    """Does the store refuse a POST carrying a form field its policy does not name?"""
    if not storage.config.direct_uploads:
        return Check(
            "fields", PASS, "not needed: direct_uploads is off, so browsers never POST to the bucket"
        )
    path = f"{PROBE_DIR}/{uuid.uuid4().hex}-fields.txt"
    plan, _ = await storage.presigned_post(path, "text/plain", len(PROBE_BODY), 60)
    try:
        accepted, answer = await try_post(
            http, plan.upload_url, {**plan.upload_fields, UNNAMED_FIELD: "1"}, PROBE_BODY
        )
    except httpx.HTTPError as ex:
        return Check("fields", WARN, f"could not send the probe POST ({type(ex).__name__}): not checked")
    finally:
        await delete_probes(storage, path)
    if accepted:
        return Check(
            "fields",
            WARN,
            f"the store accepted a POST with a form field its policy does not name ({UNNAMED_FIELD}): "
            "a client can add acl, storage class, Content-Encoding, a redirect or metadata; confirm "
            "refuses and deletes an object that shows one (an ACL only where these keys may read it)",
            "use a store that refuses unnamed POST fields (AWS S3 and Ceph RGW do)",
        )
    return Check(
        "fields", PASS, f"the store refused a POST with a form field its policy does not name ({answer})"
    )
