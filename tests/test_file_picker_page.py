"""Table pages that can show datasette-files' file picker load our take-over of
its uploads (static/datasette-files-s3-picker.js) for the direct-upload s3
sources the actor may upload to, and no other page does.
e2e/test_file_picker.py drives the picker itself in Chromium."""

import json
import re

import pytest

from datasette_files_s3 import files_bridge
from tests.helpers import actor_cookies

MODULE = "datasette-files-s3-picker.js"

pytestmark = pytest.mark.skipif(
    not files_bridge.offers_file_picker(), reason="this datasette-files offers no file picker"
)


async def with_tables(ds):
    """`data.things` with a `file` column and `data.plain` without one."""
    db = ds.add_memory_database("data")
    await db.execute_write("CREATE TABLE IF NOT EXISTS things (id INTEGER PRIMARY KEY, attachment TEXT)")
    await db.execute_write("CREATE TABLE IF NOT EXISTS plain (id INTEGER PRIMARY KEY, attachment TEXT)")
    await ds.set_column_type("data", "things", "attachment", "file")
    return ds


def picker_config(page_text: str) -> dict | None:
    """The config the page hands our module, or None when it does not load it."""
    match = re.search(r"takeOverPickerUploads\((\{.*?\})\)\);", page_text)
    return json.loads(match.group(1)) if match else None


async def test_table_with_a_file_column_loads_the_take_over_for_s3_sources(make_datasette, bucket):
    ds = await with_tables(
        await make_datasette(
            {
                "direct": {"storage": "s3", "config": bucket.source_config(multipart_threshold="5MiB")},
                "proxied": {"storage": "s3", "config": bucket.source_config(direct_uploads=False)},
            }
        )
    )
    page = await ds.client.get("/data/things", cookies=actor_cookies(ds))
    assert page.status_code == 200 and MODULE in page.text
    # Proxy sources keep the picker's own upload: it is their flow.
    assert picker_config(page.text) == {
        "sources": {
            "direct": {
                "source": "direct",
                "base-url": "/",
                "multipart-threshold": str(5 * 1024**2),
                "checksum": "sha256",
                "max-file-size": str(5 * 1024**4),
                "cors-command": "datasette files-s3 cors direct",
            }
        }
    }


@pytest.mark.parametrize(
    "path, signed_in",
    [
        ("/data/plain", True),  # no file column: no picker
        ("/data/things", False),  # anonymous may upload nowhere here
    ],
)
async def test_no_take_over_where_no_picker_can_upload_to_s3(ds, path, signed_in):
    await with_tables(ds)
    page = await ds.client.get(path, cookies=actor_cookies(ds) if signed_in else {})
    assert page.status_code == 200
    assert MODULE not in page.text
