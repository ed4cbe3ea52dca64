"""datasette-files' file picker on s3 sources: its uploads go straight to the
bucket through the bundled upload machine.

datasette-files' `<datasette-file-picker>` (opened by its cell editor, and
after 0.1a3 by its field for `file` columns in Datasette's row-edit form)
sends a new file as one form POST to prepare's upload_url: no SHA-256, no
multipart (so nothing over 5 GiB) and nothing on a store that refuses POST.
On the pages that can show it, static/datasette-files-s3-picker.js takes over
its uploads to the s3 sources the actor may upload to, and sends them as the
bundled uploader does.
"""

from __future__ import annotations

from . import files_bridge
from .multipart_views import js_literal, uploader_attributes
from .storage import S3Storage

# datasette-files' column type for a column that holds a file id.
FILE_COLUMN_TYPE = "file"
MODULE = "datasette-files-s3-picker.js"


async def has_file_column(datasette, database: str, table: str) -> bool:
    """Whether a column of the table is of datasette-files' `file` type."""
    column_types = await datasette.get_column_types(database, table)
    return any(column_type.name == FILE_COLUMN_TYPE for column_type in column_types.values())


async def picker_sources(datasette, actor) -> dict:
    """{source: its uploader attributes} for the direct-upload s3 sources the
    actor may upload to. Proxy sources keep the picker's own upload, which is
    their flow."""
    sources = {}
    for source in (datasette.plugin_config("datasette-files") or {}).get("sources") or {}:
        storage = files_bridge.storage_for(source)
        # datasette-files keeps one registry per process; ours are bound to their Datasette.
        if not isinstance(storage, S3Storage) or storage.datasette is not datasette:
            continue
        if storage.config.direct_uploads and await files_bridge.can_upload(datasette, actor, source):
            sources[source] = uploader_attributes(datasette, storage)
    return sources


def may_show_picker(request, view_name, database, table) -> bool:
    """Whether the page is one where datasette-files can show its picker, as
    far as that is known without a query: a table or row page, when it has one."""
    return (
        request is not None
        and view_name in ("table", "row")
        and bool(database and table)
        and files_bridge.offers_file_picker()
    )


async def picker_upload_script(datasette, request, database, table) -> str | None:
    """The script that hands the picker's s3 uploads to our module, for
    Datasette's extra_body_script hook on pages where may_show_picker: those of
    a table with a `file` column, for an actor who may upload to an s3 source."""
    if not await has_file_column(datasette, database, table):
        return None
    sources = await picker_sources(datasette, request.actor)
    if not sources:
        return None
    config = {"sources": sources}
    module = datasette.urls.static_plugins("datasette_files_s3", MODULE)
    return f"import({js_literal(module)}).then((m) => m.takeOverPickerUploads({js_literal(config)}));"
