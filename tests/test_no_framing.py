"""Our upload pages cannot be framed by another site (clickjacking): both the
bundled uploader's page and datasette-files' upload page, which carries it on
s3 sources, forbid framing with X-Frame-Options and CSP frame-ancestors."""

import pytest

from tests.helpers import actor_cookies


@pytest.mark.parametrize("path", ["/-/files-s3/upload/s3files", "/-/files/upload/s3files"])
async def test_upload_pages_forbid_framing(ds, path):
    response = await ds.client.get(path, cookies=actor_cookies(ds))
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
