"""Every use of datasette-files' non-public names lives here, and only here.

datasette-files 0.1a3 has no public API for "the storage of source X",
"register this file" or "fall back to your own view", so we reach into its
module. tests/test_datasette_files_contract.py covers each name below; when
datasette-files changes one, that test fails first.
"""

from __future__ import annotations

import json

import datasette_files
from datasette import Response
from datasette_files import FileSourceResource

from .config import SECRET_OPTIONS, safe_url

# datasette-files' own views, used for sources that are not ours.
stock_upload_prepare = datasette_files.upload_prepare
stock_upload_complete = datasette_files.upload_complete
stock_file_thumbnail = datasette_files.file_thumbnail
stock_file_delete = datasette_files.file_delete
stock_file_update = datasette_files.file_update
stock_file_download = datasette_files.file_download


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


def storage_for(source: str):
    """The configured Storage instance for a source, or None."""
    return datasette_files._sources.get(source)


def configured_sources() -> dict:
    """{source name: Storage} for every configured datasette-files source."""
    return dict(datasette_files._sources)


def source_id(source: str) -> int:
    """The source's row id in datasette_files_sources."""
    return datasette_files._source_meta[source]["source_id"]


async def file_record(datasette, file_id: str):
    """A datasette_files row joined with its source slug, or None."""
    return await datasette_files._get_file_record(datasette, file_id)


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
        """
        INSERT INTO datasette_files
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
