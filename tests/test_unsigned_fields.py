"""Form fields the POST policy never names change what a download is, on stores
that keep them (LocalStack, moto, some S3-compatible stores): confirm checks
what the stored object shows against what was signed, deletes a mismatch and
registers nothing. A store that refuses such a form (AWS, Ceph) is fine too."""

import pytest

from tests.helpers import actor_cookies, complete, post_form, prepare

CONTENT = b"plain bytes, as uploaded\n"

# Each field, and what the stored object shows when the store kept it.
UNSIGNED_FIELDS = {
    "acl": ("public-read", "ACL grants"),
    "x-amz-storage-class": ("GLACIER", "stored as GLACIER"),
    "Content-Encoding": ("gzip", "Content-Encoding gzip"),
    "x-amz-website-redirect-location": ("https://evil.example/", "redirects elsewhere"),
    "x-amz-meta-owner": ("mallory", "metadata that was not signed for"),
    "Cache-Control": ("public, max-age=31536000", "Cache-Control"),
    "Content-Disposition": ("inline", "Content-Disposition"),
}


def kept(bucket, key: str, field: str) -> bool:
    """Whether the stored object shows the field the form carried."""
    head = bucket.client.head_object(Bucket=bucket.name, Key=key)
    if field == "acl":
        grants = bucket.client.get_object_acl(Bucket=bucket.name, Key=key)["Grants"]
        return any("AllUsers" in (g.get("Grantee") or {}).get("URI", "") for g in grants)
    shown = {
        "x-amz-storage-class": head.get("StorageClass") not in (None, "STANDARD"),
        "Content-Encoding": bool(head.get("ContentEncoding")),
        "x-amz-website-redirect-location": bool(head.get("WebsiteRedirectLocation")),
        "x-amz-meta-owner": bool(head.get("Metadata")),
        "Cache-Control": bool(head.get("CacheControl")),
        "Content-Disposition": bool(head.get("ContentDisposition")),
    }
    return shown[field]


@pytest.mark.parametrize("field", UNSIGNED_FIELDS)
async def test_an_unsigned_form_field_the_store_kept_is_refused_at_confirm(ds, bucket, field):
    value, problem = UNSIGNED_FIELDS[field]
    cookies = actor_cookies(ds)
    prepared = (await prepare(ds, cookies, size=len(CONTENT))).json()
    hostile = {**prepared, "upload_fields": {**prepared["upload_fields"], field: value}}
    sent = post_form(hostile, CONTENT)
    if sent.status_code >= 300:
        assert not bucket.keys(bucket.prefix)  # the store refused the form: nothing to confirm
        return
    [key] = bucket.keys(bucket.prefix)
    store_kept_it = kept(bucket, key, field)
    completed = await complete(ds, cookies, prepared["upload_token"])
    if not store_kept_it:
        assert completed.status_code == 201, completed.text  # the store dropped the field
        return
    assert completed.status_code == 400, completed.text
    assert any(problem in error for error in completed.json()["errors"]), completed.json()
    assert bucket.keys(bucket.prefix) == []
