"""datasette-files' upload page and source page swap in the bundled uploader for
s3 sources that upload direct; the stock element stays everywhere else."""

import pytest

from tests.helpers import actor_cookies

SWAP = "document.createElement('datasette-files-s3-upload')"
STYLESHEET = (
    '<link rel="stylesheet" href="/-/static-plugins/datasette_files_s3/datasette-files-s3-upload.css">'
)
LISTING_MODULE = "source-page.js"


@pytest.mark.parametrize("path", ["/-/files/upload/s3files", "/-/files/source/s3files"])
async def test_s3_source_pages_swap_in_the_bundled_uploader(ds, path):
    page = await ds.client.get(path, cookies=actor_cookies(ds))
    assert page.status_code == 200
    assert SWAP in page.text
    assert '"checksum": "sha256"' in page.text and "datasette-files-s3-upload.js" in page.text
    # In <head>, so the uploader's space is kept before its module runs.
    assert STYLESHEET in page.text.split("</head>")[0]
    # Only the source page has a listing for new files to join.
    assert (LISTING_MODULE in page.text) == path.startswith("/-/files/source/")


async def test_proxy_sources_keep_the_stock_uploader(make_datasette, bucket):
    ds = await make_datasette(
        {"s3files": {"storage": "s3", "config": bucket.source_config(direct_uploads=False)}}
    )
    page = await ds.client.get("/-/files/upload/s3files", cookies=actor_cookies(ds))
    assert page.status_code == 200 and "<datasette-file-upload" in page.text
    assert SWAP not in page.text
    assert STYLESHEET not in page.text and LISTING_MODULE not in page.text
