"""Every non-public datasette-files name that files_bridge.py touches, checked.

When a datasette-files release renames or reshapes one, this file fails first
and says which.
"""

import inspect
import json
import re
from pathlib import Path

import datasette_files
import pytest
from datasette import hookimpl
from datasette.plugins import pm
from datasette_files.base import Storage, StorageCapabilities

from datasette_files_s3 import files_bridge
from datasette_files_s3.storage import S3Storage
from tests.helpers import actor_cookies, send_through_datasette, upload


def test_module_level_source_registries_exist():
    assert isinstance(datasette_files._sources, dict)
    assert isinstance(datasette_files._source_meta, dict)
    assert isinstance(datasette_files._thumbnail_generators, list)


def test_stock_views_we_delegate_to_take_request_and_datasette():
    for view in (
        datasette_files.upload_prepare,
        datasette_files.upload_complete,
        datasette_files.file_thumbnail,
        datasette_files.file_delete,
        datasette_files.file_update,
        datasette_files.file_download,
        datasette_files.upload_content,
        datasette_files.upload_page,
        datasette_files.import_file_view,
    ):
        assert list(inspect.signature(view).parameters) == ["request", "datasette"]
        assert inspect.iscoroutinefunction(view)


async def test_proxy_upload_tokens_are_kept_in_memory_with_the_fields_we_check(make_datasette, bucket):
    """proxy_upload.py reads a prepared token's source, size, actor and
    content_received from datasette-files' in-memory `_upload_tokens`."""
    ds = await make_datasette({"p": {"storage": "s3", "config": bucket.source_config(direct_uploads=False)}})
    prepared = await ds.client.post(
        "/-/files/upload/p/-/prepare",
        json={"filename": "a.txt", "size": 3},
        cookies={"ds_actor": ds.client.actor_cookie({"id": "alice"})},
    )
    token = files_bridge.proxy_upload_token(prepared.json()["upload_token"])
    assert (token.source_slug, token.size, token.actor, token.content_received) == (
        "p",
        3,
        {"id": "alice"},
        False,
    )


def test_private_helpers_keep_their_signatures():
    assert list(inspect.signature(datasette_files._get_file_record).parameters) == ["datasette", "file_id"]
    assert list(inspect.signature(datasette_files._generate_file_icon_svg).parameters) == [
        "filename",
        "content_type",
    ]
    assert list(inspect.signature(datasette_files._response_with_etag).parameters) == [
        "request",
        "body",
        "content_type",
    ]


async def test_our_file_record_query_reads_what_datasette_files_own_does(ds, bucket):
    """files_bridge.FILE_RECORD_SQL, read inside our registering write, is
    datasette-files' _get_file_record: the same columns, in order, and values."""
    file_id = (await upload(ds, actor_cookies(ds), b"record"))["file"]["id"]
    theirs = await datasette_files._get_file_record(ds, file_id)
    ours = await ds.get_internal_database().execute_fn(
        lambda conn: files_bridge.file_record_in(conn, file_id)
    )
    assert list(ours.keys()) == list(theirs.keys())
    assert tuple(ours) == tuple(theirs)


def configured_sources() -> dict:
    """{source name: Storage} for every configured datasette-files source: its
    registry, which storage_for reads (moved here: only this test used it)."""
    return dict(datasette_files._sources)


def test_file_source_resource_is_importable():
    assert files_bridge.FileSourceResource("x").parent == "x"


def test_file_resource_is_importable():
    """can_delete asks for files-delete on one file (the file page's Delete)."""
    resource = files_bridge.FileResource("x", "df-1")
    assert (resource.parent, resource.child) == ("x", "df-1")


async def test_registries_are_filled_with_our_storage_and_source_id(ds):
    storage = files_bridge.storage_for("s3files")
    assert isinstance(storage, S3Storage)
    assert storage.source == "s3files"
    assert isinstance(files_bridge.source_id("s3files"), int)
    assert "s3files" in configured_sources()
    assert files_bridge.thumbnail_generators(), "datasette-files registers a Pillow generator"


async def test_datasette_files_table_has_the_columns_we_insert(ds):
    columns = {
        row["name"]
        for row in (await ds.get_internal_database().execute("PRAGMA table_info(datasette_files)")).rows
    }
    assert {
        "id",
        "source_id",
        "path",
        "filename",
        "content_type",
        "content_hash",
        "size",
        "uploaded_by",
        "metadata",
    } <= columns
    thumbs = {
        row["name"]
        for row in (
            await ds.get_internal_database().execute("PRAGMA table_info(datasette_files_thumbnails)")
        ).rows
    }
    assert {"file_id", "thumbnail", "content_type", "width", "height", "generator"} <= thumbs


def test_s3storage_implements_every_storage_method():
    for name, member in inspect.getmembers(Storage, inspect.isfunction):
        if not name.startswith("_"):
            assert getattr(S3Storage, name) is not member, f"S3Storage does not override {name}"


async def test_our_routes_answer_first_and_other_sources_keep_stock_behaviour(
    make_datasette, bucket, tmp_path
):
    """@hookimpl(tryfirst=True) puts our prepare ahead of datasette-files'; a
    filesystem source still gets datasette-files' own upload flow."""
    ds = await make_datasette(
        {
            "s3files": {"storage": "s3", "config": bucket.source_config()},
            "disk": {"storage": "filesystem", "config": {"root": str(tmp_path)}},
        }
    )
    cookies = {"ds_actor": ds.client.actor_cookie({"id": "alice"})}
    body = {"filename": "a.txt", "content_type": "text/plain", "size": 3}
    ours = (await ds.client.post("/-/files/upload/s3files/-/prepare", json=body, cookies=cookies)).json()
    stock = (await ds.client.post("/-/files/upload/disk/-/prepare", json=body, cookies=cookies)).json()
    assert "policy" in ours["upload_fields"]
    assert stock["upload_url"] == "/-/files/upload/disk/-/upload"
    assert stock["upload_token"].startswith("tok_")
    done = await send_through_datasette(ds, cookies, stock, b"abc", filename="a.txt", source="disk")
    assert done.status_code == 201
    assert (tmp_path / done.json()["file"]["id"][3:] / "a.txt").read_bytes() == b"abc"


class ConfigProbe:
    """A storage type that changes its config dict in configure, as S3Storage
    does to remove secrets, so the test sees what datasette-files then stores."""

    storage_type = "config-probe"
    capabilities = StorageCapabilities()

    async def configure(self, config, get_secret=None):
        config.pop("secret", None)
        config["configured"] = True


class ConfigProbePlugin:
    @hookimpl
    def register_files_storage_types(self, datasette):
        return [ConfigProbe]


async def test_startup_stores_the_config_dict_after_configure_returns(make_datasette):
    """files_bridge.keep_secrets_out_of_stored_config relies on this: datasette-files
    json.dumps the very dict it passed to Storage.configure, after configure."""
    pm.register(ConfigProbePlugin(), name="config-probe")
    try:
        ds = await make_datasette(
            {"probe": {"storage": "config-probe", "config": {"secret": "x", "keep": 1}}}
        )
    finally:
        pm.unregister(name="config-probe")
    stored = (
        await ds.get_internal_database().execute(
            "SELECT config FROM datasette_files_sources WHERE slug = 'probe'"
        )
    ).single_value()
    assert json.loads(stored) == {"keep": 1, "configured": True}


async def test_thumbnails_are_left_to_datasette_files_only_where_it_makes_them_safely(make_datasette):
    """files_bridge.makes_thumbnails_safely() holds on datasette-files main (its
    Pillow subprocess comes with the failures table) and not on 0.1a3, whose
    thumbnails thumbnails.py makes for s3 files."""
    ds = await make_datasette({})
    tables = await ds.get_internal_database().table_names()
    assert files_bridge.makes_thumbnails_safely() == ("datasette_files_thumbnail_failures" in tables)


def test_file_picker_has_the_members_our_take_over_uses():
    """static/datasette-files-s3-picker.js wraps the picker's _handleUpload and
    reads its file input, source select, upload button and status, then calls
    its _done: datasette-files' picker must still have each of them."""
    script = files_bridge.file_picker_script()
    if script is None:
        pytest.skip("this datasette-files offers no file picker")
    assert re.search(r"^\s*(async\s+)?_handleUpload\(\)\s*\{", script, re.MULTILINE)
    assert re.search(r"^\s*_done\(fileId\)\s*\{", script, re.MULTILINE)
    for member in ("_fileInput", "_sourceSelect", "_uploadBtn", "_uploadStatus"):
        assert re.search(rf"this\.{member} = ", script), member
    # The picker calls _handleUpload through `this`, so wrapping the prototype's takes over.
    assert "this._handleUpload()" in script


def test_our_picker_module_uses_only_the_fenced_members():
    ours = (Path(files_bridge.__file__).parent / "static" / "datasette-files-s3-picker.js").read_text()
    declared = re.search(r"PICKER_MEMBERS = \[(.*?)\]", ours).group(1)
    assert tuple(re.findall(r'"(\w+)"', declared)) == files_bridge.FILE_PICKER_MEMBERS
    used = set(re.findall(r"\b(?:picker|this|prototype)\.(_\w+)", ours))
    assert used <= set(files_bridge.FILE_PICKER_MEMBERS), used
