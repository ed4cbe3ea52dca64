"""Thumbnails for S3 files that no image can turn into a stall of the server.

datasette-files makes thumbnails by reading the whole file and decoding it on
the event loop, so a 0.5 MB PNG that declares 13000x13000 pixels held every
other request for seconds. For S3 files:

- only images up to the source's `thumbnail_max_size` are read, with a
  bounded Range read;
- the dimensions are read from the image's header first, and an image over
  MAX_PIXELS is refused before anything is decoded;
- decoding runs in a thread pool of its own, never on the event loop, and at
  most DECODE_WORKERS images are read and decoded at a time;
- a file whose thumbnail could not be made is remembered (the last
  FAILED_MEMORY of them), so a listing page does not try it again on every
  request.

A thumbnail that is made goes into datasette-files' own thumbnail cache;
everything else gets datasette-files' file-type icon.
"""

from __future__ import annotations

import asyncio
import io
import logging
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from . import files_bridge

logger = logging.getLogger("datasette_files_s3")

# The limit datasette-files' own (unreleased) main branch uses: a 12 MP photo
# decodes in a fraction of a second, a 169 MP bomb takes seconds and 169 MB+.
MAX_PIXELS = 12_000_000
DECODE_WORKERS = 2
FAILED_MEMORY = 10_000
THUMBNAIL_SIZE = 200

_decoder = ThreadPoolExecutor(max_workers=DECODE_WORKERS, thread_name_prefix="datasette-files-s3-thumbnails")


class ImageRefused(Exception):
    """The image's header declares more pixels than a thumbnail may decode."""


class FailedThumbnails:
    """The file ids whose thumbnail could not be made: the most recent `size` of them."""

    def __init__(self, size: int):
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, file_id: str) -> bool:
        return file_id in self._ids

    def add(self, file_id: str) -> None:
        self._ids[file_id] = None
        self._ids.move_to_end(file_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


failed = FailedThumbnails(FAILED_MEMORY)
# One semaphore per event loop (an asyncio.Semaphore belongs to the loop that first waits on it).
_slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def decode_slot() -> asyncio.Semaphore:
    """This event loop's turnstile: at most DECODE_WORKERS images in memory and in decoding."""
    loop = asyncio.get_running_loop()
    if loop not in _slots:
        _slots[loop] = asyncio.Semaphore(DECODE_WORKERS)
    return _slots[loop]


def thumbnail_eligible(row, max_size: int) -> bool:
    """Only images small enough to read are worth a thumbnail."""
    content_type = (row["content_type"] or "").lower()
    size = row["size"]
    return content_type.startswith("image/") and size is not None and 0 < size <= max_size


def check_pixels(data: bytes, limit: int = MAX_PIXELS) -> None:
    """Raise ImageRefused when the image's header declares more than `limit` pixels.

    Pillow's open() reads only the header; nothing is decoded. Data Pillow does
    not recognise passes: the thumbnail generators will judge it.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours
        raise ImageRefused(f"over Pillow's decompression bomb limit, let alone {limit} pixels") from None
    except Exception:
        return
    if width * height > limit:
        raise ImageRefused(f"{width}x{height} is {width * height} pixels, over the {limit} pixel limit")


def render(generators: list, data: bytes, row):
    """(generator name, ThumbnailResult) from the first generator that makes one, or None.

    Runs in a worker thread. A generator's generate() is a coroutine by
    datasette-files' contract but does its decoding without ever yielding,
    so it gets a private event loop here, off the server's.
    """
    check_pixels(data)
    for generator in generators:
        try:
            result = asyncio.run(
                generator.generate(
                    data,
                    row["content_type"],
                    row["filename"],
                    max_width=THUMBNAIL_SIZE,
                    max_height=THUMBNAIL_SIZE,
                )
            )
        except Exception:
            logger.warning("thumbnail generator %s failed for %s", generator.name, row["id"])
            continue
        if result:
            return generator.name, result
    return None


async def settled(datasette, file_id: str) -> bool | None:
    """True when a thumbnail is cached, False when making one failed, None when not yet tried."""
    if file_id in failed:
        return False
    if await files_bridge.thumbnail_cached(datasette, file_id):
        return True
    return None


async def ensure_thumbnail(datasette, storage, row) -> bool:
    """Generate and cache a thumbnail if the file qualifies; True if one is cached.

    S3 errors propagate and are not remembered: they pass. An image refused
    by its header, or one no generator could read, is remembered as failed.
    """
    if not thumbnail_eligible(row, storage.config.thumbnail_max_size):
        return False
    outcome = await settled(datasette, row["id"])
    if outcome is not None:
        return outcome
    generators = [
        g
        for g in files_bridge.thumbnail_generators()
        if await g.can_generate(row["content_type"], row["filename"])
    ]
    if not generators:
        return False
    async with decode_slot():
        # Another request for the same file may have settled it while this one waited.
        outcome = await settled(datasette, row["id"])
        if outcome is not None:
            return outcome
        made = await make_thumbnail(storage, row, generators)
    if made is None:
        failed.add(row["id"])
        return False
    generator_name, result = made
    await files_bridge.cache_thumbnail(datasette, row["id"], generator_name, result)
    return True


async def thumbnail_quietly(datasette, storage, row) -> bool:
    """Make a thumbnail now if cheap; True when one is cached. A failure only means the icon."""
    if files_bridge.makes_thumbnails_safely():
        return False  # datasette-files makes it, on the thumbnail's first request
    try:
        return await ensure_thumbnail(datasette, storage, row)
    except Exception as ex:
        logger.warning("thumbnail for %s not generated: %s", row["id"], type(ex).__name__)
        return False


async def make_thumbnail(storage, row, generators: list):
    """Read the image (bounded, even if the object grew since it was registered)
    and render it in the decode pool; None when it is refused or unreadable."""
    data = await storage.read_bytes(row["path"], storage.config.thumbnail_max_size)
    try:
        return await asyncio.get_running_loop().run_in_executor(_decoder, render, generators, data, row)
    except ImageRefused as ex:
        logger.warning("thumbnail for %s refused: %s", row["id"], ex)
        return None
