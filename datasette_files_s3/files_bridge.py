"""Every use of datasette-files' non-public names, and every query on its
tables (datasette_files, datasette_files_sources, datasette_files_thumbnails),
lives here, and only here.

datasette-files 0.1a3 has no public API for "the storage of source X",
"register this file" or "fall back to your own view", so we reach into its
module. tests/test_datasette_files_contract.py covers each name below; when
datasette-files changes one, that test fails first.
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import json
import sqlite3
from datetime import datetime, timezone

import datasette_files
import datasette_files.base as datasette_files_base
from datasette import Response
from datasette_files import FileResource, FileSourceResource

from .config import SECRET_OPTIONS, safe_url

# The tables datasette-files keeps in the internal database that we read or write.
FILES_TABLE = "datasette_files"
SOURCES_TABLE = "datasette_files_sources"
THUMBNAILS_TABLE = "datasette_files_thumbnails"
# A subquery for the ids of every registered file, for our own statements that
# must see datasette-files' rows in the same query or transaction as ours.
REGISTERED_IDS_SQL = f"SELECT id FROM {FILES_TABLE}"

# datasette-files' own views, used for sources that are not ours.
stock_upload_prepare = datasette_files.upload_prepare
stock_upload_complete = datasette_files.upload_complete
stock_file_thumbnail = datasette_files.file_thumbnail
stock_file_delete = datasette_files.file_delete
stock_file_update = datasette_files.file_update
stock_file_download = datasette_files.file_download
stock_upload_content = datasette_files.upload_content
stock_upload_page = datasette_files.upload_page
stock_file_import = datasette_files.import_file_view


def keep_secrets_out_of_stored_config(config: dict) -> None:
    """Remove the secrets from a source's config dict before datasette-files stores it.

    datasette-files 0.1a3's startup calls `Storage.configure(source_config)`
    and then writes `json.dumps(source_config)`, the very same dict (a fresh
    copy from `plugin_config`, `$env` values resolved), into
    `datasette_files_sources.config`. Called from configure once the config is
    parsed, this leaves no secret (nor a URL's query or user info) in that row.
    The access key id goes too: only presigned URLs, where S3 needs it, show it.
    """
    for name in (*SECRET_OPTIONS, "access_key_id"):
        config.pop(name, None)
    if isinstance(config.get("credentials_url"), str):
        config["credentials_url"] = safe_url(config["credentials_url"])


def file_too_large(max_bytes: int) -> Exception:
    """datasette-files' FileTooLarge for a bounded read over `max_bytes`.

    Only releases after 0.1a3 have it (with Storage.read_file_limited, its one
    caller); on 0.1a3 nothing calls read_file_limited, so a plain error will do.
    """
    too_large = getattr(datasette_files_base, "FileTooLarge", None)
    if too_large is None:
        return ValueError(f"File exceeds the {max_bytes} byte read limit")
    return too_large.for_limit(max_bytes)


def proxy_upload_token(value: str):
    """datasette-files' in-memory UploadToken for a proxied upload, or None."""
    return datasette_files._upload_tokens.get(value)


def storage_for(source: str):
    """The configured Storage instance for a source, or None."""
    return datasette_files._sources.get(source)


def source_id(source: str) -> int:
    """The source's row id in datasette_files_sources."""
    return datasette_files._source_meta[source]["source_id"]


async def file_record(datasette, file_id: str):
    """A datasette_files row joined with its source slug, or None."""
    return await datasette_files._get_file_record(datasette, file_id)


# datasette-files' _get_file_record query, for reading a file's record inside a
# write of ours (the one that registers it) instead of in a trip of its own.
FILE_RECORD_SQL = f"""
SELECT f.*, s.slug as source_slug
FROM {FILES_TABLE} f
JOIN {SOURCES_TABLE} s ON f.source_id = s.id
WHERE f.id = ?
"""


def file_record_in(conn, file_id: str):
    """`file_record` read on a connection we hold (sqlite3.Row, as Datasette's reads answer), or None."""
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row
    return cursor.execute(FILE_RECORD_SQL, [file_id]).fetchone()


def thumbnail_generators() -> list:
    """The registered ThumbnailGenerator instances."""
    return list(datasette_files._thumbnail_generators)


def icon_response(request, filename: str, content_type: str) -> Response:
    """datasette-files' file-type icon, as its thumbnail view would send it."""
    svg = datasette_files._generate_file_icon_svg(filename, content_type or "").encode("utf-8")
    return datasette_files._response_with_etag(request, svg, "image/svg+xml")


async def can_upload(datasette, actor, source: str) -> bool:
    """Whether the actor holds files-upload on the source."""
    return await datasette.allowed(action="files-upload", resource=FileSourceResource(source), actor=actor)


async def can_delete(datasette, actor, source: str, file_id: str) -> bool:
    """Whether the actor holds files-delete on the file."""
    return await datasette.allowed(action="files-delete", resource=FileResource(source, file_id), actor=actor)


async def can_browse(datasette, actor, source: str) -> bool:
    """Whether the actor holds files-browse on the source."""
    return await datasette.allowed(action="files-browse", resource=FileSourceResource(source), actor=actor)


def file_row_insert(
    *,
    file_id: str,
    source: str,
    path: str,
    filename: str,
    content_type: str,
    size: int,
    actor_id: str | None,
    metadata: dict,
    content_hash: str | None = None,
) -> tuple[str, dict]:
    """The INSERT datasette-files' own upload would run, as (sql, params).

    Running it raises sqlite3.IntegrityError if the file id is already
    registered, which is how a replayed confirmation is caught even between
    two processes writing one internal database.
    """
    return (
        f"""
        INSERT INTO {FILES_TABLE}
            (id, source_id, path, filename, content_type, content_hash, size, uploaded_by, metadata)
        VALUES
            (:id, :source_id, :path, :filename, :content_type, :content_hash, :size, :uploaded_by, :metadata)
        """,
        {
            "id": file_id,
            "source_id": source_id(source),
            "path": path,
            "filename": filename,
            "content_type": content_type,
            "content_hash": content_hash,
            "size": size,
            "uploaded_by": actor_id,
            "metadata": json.dumps(metadata),
        },
    )


def file_json(datasette, row) -> dict:
    """The `file` object datasette-files' complete endpoint answers with."""
    file_id = row["id"]
    return {
        "id": file_id,
        "filename": row["filename"],
        "content_type": row["content_type"],
        "content_hash": row["content_hash"],
        "size": row["size"],
        "width": row["width"],
        "height": row["height"],
        "source_slug": row["source_slug"],
        "uploaded_by": row["uploaded_by"],
        "created_at": row["created_at"],
        "url": datasette.urls.path(f"/-/files/{file_id}"),
        "download_url": datasette.urls.path(f"/-/files/{file_id}/download"),
        "thumbnail_url": datasette.urls.path(f"/-/files/{file_id}/thumbnail"),
    }


async def record_s3_metadata(datasette, file_id: str, s3: dict) -> None:
    """Replace the `s3` entry of a file's metadata (written by confirm) with `s3`."""
    db = datasette.get_internal_database()

    def write(conn):
        row = conn.execute(f"SELECT metadata FROM {FILES_TABLE} WHERE id = ?", [file_id]).fetchone()
        if row is None:
            return
        metadata = json.loads(row[0] or "{}")
        metadata["s3"] = s3
        conn.execute(f"UPDATE {FILES_TABLE} SET metadata = ? WHERE id = ?", [json.dumps(metadata), file_id])

    await db.execute_write_fn(write)


async def _any_row(datasette, sql: str, params: list) -> bool:
    """Whether a query on the internal database returns any row."""
    return (await datasette.get_internal_database().execute(sql, params)).first() is not None


async def file_registered(datasette, file_id: str) -> bool:
    """True once datasette-files has a row for this file id."""
    return await _any_row(datasette, f"SELECT 1 FROM {FILES_TABLE} WHERE id = ?", [file_id])


async def id_or_path_registered(datasette, source: str, file_id: str, path: str) -> bool:
    """Whether datasette-files knows this file, by its id or by its path in this source
    (cleanup's test: a file registered under another id still owns its key)."""
    return await _any_row(
        datasette,
        f"""
        SELECT 1 FROM {FILES_TABLE} f JOIN {SOURCES_TABLE} s ON s.id = f.source_id
        WHERE f.id = ? OR (s.slug = ? AND f.path = ?)
        """,
        [file_id, source, path],
    )


async def source_known_since(datasette, source: str) -> float | None:
    """When this internal database first recorded the source, in seconds since the
    epoch, or None if it never did (or the time cannot be read).

    datasette-files writes `datasette_files_sources.created_at` (SQLite's
    `datetime('now')`, UTC) when a source is first seen and never updates it.
    """
    row = (
        await datasette.get_internal_database().execute(
            f"SELECT created_at FROM {SOURCES_TABLE} WHERE slug = ?", [source]
        )
    ).first()
    if row is None or not row["created_at"]:
        return None
    try:
        created = datetime.fromisoformat(str(row["created_at"]).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (created if created.tzinfo else created.replace(tzinfo=timezone.utc)).timestamp()


# The members of datasette-files' <datasette-file-picker> (its static
# datasette-file-picker.js) that static/datasette-files-s3-picker.js uses, as
# its PICKER_MEMBERS: the picker has no public way to take over its upload.
FILE_PICKER_MEMBERS = ("_handleUpload", "_fileInput", "_sourceSelect", "_uploadBtn", "_uploadStatus", "_done")


def file_picker_script() -> str | None:
    """The source of datasette-files' <datasette-file-picker>, or None when it
    offers no picker. Its cell editor opens one (0.1a3), and after 0.1a3 its
    field for `file` columns in Datasette's row-edit form."""
    script = importlib.resources.files("datasette_files") / "static" / "datasette-file-picker.js"
    return script.read_text(encoding="utf-8") if script.is_file() else None


@functools.cache
def offers_file_picker() -> bool:
    """Whether datasette-files has a <datasette-file-picker> that uploads."""
    script = file_picker_script()
    return script is not None and "_handleUpload" in script


def makes_thumbnails_safely() -> bool:
    """True when datasette-files makes thumbnails safely itself, as its main branch
    after 0.1a3 does: it reads through Storage.read_file_limited (ours is one
    bounded GET) and decodes in a Pillow subprocess with pixel, time and memory
    limits. Then thumbnails.py steps aside; 0.1a3 reads whole files and
    decodes on the event loop, so there thumbnails.py makes them."""
    return (
        hasattr(datasette_files_base.Storage, "read_file_limited")
        and importlib.util.find_spec("datasette_files.pillow_worker") is not None
    )


async def thumbnail_cached(datasette, file_id: str) -> bool:
    """True when datasette-files' cache already holds a thumbnail for the file."""
    return await _any_row(datasette, f"SELECT 1 FROM {THUMBNAILS_TABLE} WHERE file_id = ?", [file_id])


async def cache_thumbnail(datasette, file_id: str, generator_name: str, result) -> None:
    """Store a generator's ThumbnailResult in datasette-files' thumbnail cache,
    where its own thumbnail view serves it from."""
    await datasette.get_internal_database().execute_write(
        f"""INSERT OR REPLACE INTO {THUMBNAILS_TABLE}
           (file_id, thumbnail, content_type, width, height, generator)
           VALUES (?, ?, ?, ?, ?, ?)""",
        [file_id, result.thumb_bytes, result.content_type, result.width, result.height, generator_name],
    )
