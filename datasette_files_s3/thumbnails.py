"""Thumbnails for S3 files without pulling large objects through Datasette.

datasette-files makes thumbnails by reading the whole file. For S3 files we
only read images under the source's `thumbnail_max_size`, with a bounded Range
read, and store the result in datasette-files' own thumbnail cache; everything
else gets datasette-files' file-type icon.
"""

from __future__ import annotations

import logging

from . import files_bridge

logger = logging.getLogger("datasette_files_s3")


def thumbnail_eligible(row, max_size: int) -> bool:
    """Only images small enough to read are worth a thumbnail."""
    content_type = (row["content_type"] or "").lower()
    size = row["size"]
    return content_type.startswith("image/") and size is not None and 0 < size <= max_size


async def cached_thumbnail_exists(datasette, file_id: str) -> bool:
    """True when datasette-files' cache already holds a thumbnail for the file."""
    row = (
        await datasette.get_internal_database().execute(
            "SELECT 1 FROM datasette_files_thumbnails WHERE file_id = ?", [file_id]
        )
    ).first()
    return row is not None


async def ensure_thumbnail(datasette, storage, row) -> bool:
    """Generate and cache a thumbnail if the file qualifies; True if one is cached."""
    max_size = storage.config.thumbnail_max_size
    if not thumbnail_eligible(row, max_size):
        return False
    if await cached_thumbnail_exists(datasette, row["id"]):
        return True
    generators = [
        g
        for g in files_bridge.thumbnail_generators()
        if await g.can_generate(row["content_type"], row["filename"])
    ]
    if not generators:
        return False
    # Bounded even if the object changed size since it was registered.
    file_bytes = await storage.read_bytes(row["path"], max_size)
    for generator in generators:
        try:
            result = await generator.generate(
                file_bytes, row["content_type"], row["filename"], max_width=200, max_height=200
            )
        except Exception:
            logger.warning("thumbnail generator %s failed for %s", generator.name, row["id"])
            continue
        if result:
            await datasette.get_internal_database().execute_write(
                """INSERT OR REPLACE INTO datasette_files_thumbnails
                   (file_id, thumbnail, content_type, width, height, generator)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                [
                    row["id"],
                    result.thumb_bytes,
                    result.content_type,
                    result.width,
                    result.height,
                    generator.name,
                ],
            )
            return True
    return False
