"""Limits our routes set around datasette-files' own views on s3 sources.

Some of our routes run datasette-files' view for a proxy-mode source (its
upload, its complete). What that view then asks of `S3Storage` is held here,
for the length of a `with` block (and in tasks started in it), through context
variables: the storage reads them, the views set them.
"""

from __future__ import annotations

import contextlib
import contextvars

# Set while datasette-files' own view runs for a proxy-mode source: its
# complete reads the whole object to make a thumbnail and decodes it on the
# event loop. Refused, it skips that; ours is made on first request, bounded.
_whole_reads_refused = contextvars.ContextVar("whole_reads_refused", default=False)
# Set there too: after 0.1a3 its complete makes the thumbnail itself, in a
# background task (which inherits this), through read_file_limited with its own
# size limit; the source's thumbnail_max_size must hold as well.
_limited_reads_at_most = contextvars.ContextVar("limited_reads_at_most", default=None)
# (key, most bytes) a proxied upload may write: its checked token's, or None.
_receiving_only = contextvars.ContextVar("receiving_only", default=None)


@contextlib.contextmanager
def whole_reads_refused():
    """Within this block, read_file (the whole object) raises StorageUnavailable."""
    token = _whole_reads_refused.set(True)
    try:
        yield
    finally:
        _whole_reads_refused.reset(token)


@contextlib.contextmanager
def limited_reads_at_most(max_bytes: int):
    """Within this block, and in tasks started in it, read_file_limited reads
    at most `max_bytes`: a larger object is datasette-files' FileTooLarge, unread."""
    token = _limited_reads_at_most.set(max_bytes)
    try:
        yield
    finally:
        _limited_reads_at_most.reset(token)


@contextlib.contextmanager
def receiving_only(path: str, max_bytes: int):
    """Within this block, receive_upload writes `path` (refusing any other) and
    at most `max_bytes` (BodyTooLarge beyond, the partial upload aborted).

    The proxy upload route checks the token in upload_url's query before the
    body is read; datasette-files then uses the form's upload_token, which
    could name another token (another actor's). This holds the write to the
    checked one, and to the size it declared."""
    token = _receiving_only.set((path, max_bytes))
    try:
        yield
    finally:
        _receiving_only.reset(token)


def whole_reads_are_refused() -> bool:
    return _whole_reads_refused.get()


def limited_read_cap() -> int | None:
    """The most bytes read_file_limited may read here, or None for its own limit only."""
    return _limited_reads_at_most.get()


def receiving_limits() -> tuple[str, int] | None:
    """(path, most bytes) receive_upload may write here, or None."""
    return _receiving_only.get()
