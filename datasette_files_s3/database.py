"""This plugin's own tables in Datasette's internal database.

- Pending uploads: prepared but not yet confirmed. A row is written when an
  upload is signed and removed when it is confirmed or rejected, so
  `datasette files-s3 cleanup` can find what abandoned uploads left in the
  bucket. Confirmation never depends on a row being here: the signed token
  carries everything, so any process sharing the secret can confirm.
- Completed uploads: every file id a token has registered, kept until that
  token can no longer be used, so a token confirms once even after its file
  is deleted (a deleted file's key could be filled again with the same policy).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import weakref
from collections.abc import Callable
from functools import partial

from . import files_bridge

PENDING_TABLE = "datasette_files_s3_pending"
COMPLETED_TABLE = "datasette_files_s3_completed"

CREATE_SQL = f"""
CREATE TABLE IF NOT EXISTS {PENDING_TABLE} (
    file_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    upload_id TEXT,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    part_size INTEGER,
    actor_id TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
-- What the per-actor limits count: one actor's unexpired uploads of a kind on a source.
CREATE INDEX IF NOT EXISTS {PENDING_TABLE}_by_actor
    ON {PENDING_TABLE} (source, actor_id, kind, expires_at);
CREATE TABLE IF NOT EXISTS {COMPLETED_TABLE} (
    file_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    -- after this (epoch seconds) the token is refused as expired anyway
    forget_after REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS {COMPLETED_TABLE}_forget_after ON {COMPLETED_TABLE} (forget_after);
"""


async def create_tables(datasette) -> None:
    """Create our tables if they are not there yet."""
    await datasette.get_internal_database().execute_write_script(CREATE_SQL)


INSERT_PENDING_SQL = f"""
INSERT OR REPLACE INTO {PENDING_TABLE}
    (file_id, source, path, kind, upload_id, filename, content_type,
     size, part_size, actor_id, created_at, expires_at)
VALUES (:file_id, :source, :path, :kind, :upload_id, :filename, :content_type,
     :size, :part_size, :actor_id, :created_at, :expires_at)
"""


class PendingLimitReached(Exception):
    """The actor already holds `limit` unexpired pending uploads of this kind
    on this source; the oldest of them expires at `frees_at`."""

    def __init__(self, limit: int, frees_at: float):
        super().__init__(f"{limit} pending uploads")
        self.limit = limit
        self.frees_at = frees_at


HELD_SQL = f"""
SELECT COUNT(*), MIN(expires_at) FROM {PENDING_TABLE}
WHERE source = ? AND actor_id IS ? AND kind = ? AND expires_at > ?
"""


def limit_reached(conn, row: dict, limit: int | None) -> PendingLimitReached | None:
    """Whether one more pending row like this one would exceed the actor's limit.

    Counts only rows that have not expired: an expired upload can no longer
    be sent (cleanup removes its row later), so it holds no place.
    """
    if limit is None:
        return None
    held, soonest = conn.execute(
        HELD_SQL, [row["source"], row["actor_id"], row["kind"], time.time()]
    ).fetchone()
    return PendingLimitReached(limit, soonest) if held >= limit else None


async def check_pending_limit(datasette, ticket, limit: int | None) -> None:
    """PendingLimitReached if the actor is already at the limit, read without writing.

    A cheap early answer for callers that would otherwise do work first (a
    multipart create asks S3); record_pending decides for good.
    """
    reached = await datasette.get_internal_database().execute_fn(
        partial(limit_reached, row=pending_row(ticket), limit=limit)
    )
    if reached is not None:
        raise reached


def pending_row(ticket) -> dict:
    """The ticket as a row of the pending table."""
    return {
        "file_id": ticket.file_id,
        "source": ticket.source,
        "path": ticket.path,
        # Which limit the row counts against: max_pending_uploads for one request
        # (POST or PUT alike, "post" as before PUT existed) or max_open_multipart_uploads.
        "kind": "post" if ticket.single_request else "multipart",
        "upload_id": ticket.upload_id,
        "filename": ticket.filename,
        "content_type": ticket.content_type,
        "size": ticket.size,
        "part_size": ticket.part_size,
        "actor_id": ticket.actor_id,
        "created_at": time.time(),
        "expires_at": ticket.expires_at,
    }


async def record_pending(datasette, ticket, limit: int | None = None) -> None:
    """Remember a signed upload until it is confirmed or cleaned up.

    Returns once the row is committed, so a token is never handed out for an
    upload cleanup could not find. With a `limit`, raises PendingLimitReached
    instead of writing when the actor already holds that many unexpired
    uploads of this kind on this source; the count and the write are one
    transaction, so concurrent requests cannot overshoot it.
    """
    await grouped_writes(datasette).write(partial(insert_pending_row, row=pending_row(ticket), limit=limit))


def insert_pending_row(conn, row: dict, limit: int | None) -> None:
    """Insert the row if the actor's limit allows it, else raise the PendingLimitReached that kept it out."""
    reached = limit_reached(conn, row, limit)
    if reached is not None:
        raise reached
    conn.execute(INSERT_PENDING_SQL, row)


def grouped_writes(datasette) -> GroupedWrites:
    """This Datasette's GroupedWrites (one per Datasette, made on first use)."""
    grouped = _grouped.get(datasette)
    if grouped is None:
        grouped = _grouped[datasette] = GroupedWrites(datasette)
    return grouped


class GroupedWrites:
    """Group commit: concurrent writes to the internal database share one write.

    Each trip to Datasette's write thread costs far more than one upload's
    statements (measured: about 0.5 ms against 0.02 ms for a pending row), so
    writes that arrive while one trip is in flight wait and go together in the
    next, as one transaction. A lone write goes at once, as before. Each write
    runs in a savepoint of its own: one that raises (a limit reached, a file
    already registered) is undone alone and only its caller hears of it.
    """

    def __init__(self, datasette):
        # Weak: this is the value of a WeakKeyDictionary keyed by datasette.
        self.datasette = weakref.ref(datasette)
        self.waiting: list[tuple[Callable, asyncio.Future]] = []
        self.writer: asyncio.Task | None = None

    async def write(self, fn: Callable):
        """Run `fn(conn)` in the next shared write; returns its result once committed, or raises its error."""
        loop = asyncio.get_running_loop()
        committed = loop.create_future()
        self.waiting.append((fn, committed))
        if self.writer is None or self.writer.done() or self.writer.get_loop() is not loop:
            # A task of its own, so a caller that gives up (client gone) never
            # strands the writes queued behind its own; a fresh context, so it
            # does not carry the first caller's request context into later batches.
            self.writer = loop.create_task(self.write_while_waiting(), context=contextvars.Context())
        return await committed

    async def write_while_waiting(self) -> None:
        batch: list = []
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                try:
                    outcomes = await self.write_batch([fn for fn, _ in batch])
                except Exception as ex:  # every caller in the batch hears of it
                    settle(batch, [(None, ex)] * len(batch))
                else:
                    settle(batch, outcomes)
        finally:
            # Cancelled (the loop is shutting down): nobody may be left waiting.
            interrupted = RuntimeError("the internal database write was interrupted")
            unsettled = batch + self.waiting
            settle(unsettled, [(None, interrupted)] * len(unsettled))
            self.waiting = []

    async def write_batch(self, fns: list[Callable]) -> list:
        datasette = self.datasette()
        if datasette is None:
            raise RuntimeError("Datasette has gone")
        return await datasette.get_internal_database().execute_write_fn(partial(run_each, fns=fns))


def run_each(conn, fns: list[Callable]) -> list[tuple[object, BaseException | None]]:
    """Run each write in a savepoint of its own: (result, None), or (None, its error) with it undone."""
    outcomes = []
    for fn in fns:
        conn.execute("SAVEPOINT grouped_write")
        try:
            result = fn(conn)
        except Exception as ex:  # this write's own failure, for its own caller
            conn.execute("ROLLBACK TO grouped_write")
            conn.execute("RELEASE grouped_write")
            outcomes.append((None, ex))
        else:
            conn.execute("RELEASE grouped_write")
            outcomes.append((result, None))
    return outcomes


def settle(
    batch: list[tuple[object, asyncio.Future]], outcomes: list[tuple[object, BaseException | None]]
) -> None:
    """Wake every caller in the batch that is still waiting: with its result, or its error."""
    for (_, committed), (result, error) in zip(batch, outcomes, strict=True):
        if committed.done() or committed.get_loop().is_closed():
            continue
        if error is None:
            committed.set_result(result)
        else:
            committed.set_exception(error)


_grouped: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def forget_pending(datasette, file_id: str) -> None:
    """Drop a pending upload once it is registered or rejected."""
    await datasette.get_internal_database().execute_write(
        f"DELETE FROM {PENDING_TABLE} WHERE file_id = ?", [file_id]
    )


async def register_and_forget(datasette, file_insert: tuple[str, dict], ticket, forget_after: float):
    """In one write transaction (shared with concurrent ones, GroupedWrites):
    insert the file's datasette-files row, remember its id as completed until
    `forget_after`, and drop its pending row. Returns the file's record
    (files_bridge.file_record), read in the same write.

    Raises sqlite3.IntegrityError if the id is already registered or was ever
    completed. Completed rows whose token has expired are forgotten on the way,
    but only while their file is still registered: a deleted file's row stays
    until cleanup has checked its key (see cleanup.clean_completed).
    """

    def write(conn):
        conn.execute(*file_insert)
        conn.execute(
            f"INSERT INTO {COMPLETED_TABLE} (file_id, source, path, forget_after) VALUES (?, ?, ?, ?)",
            [ticket.file_id, ticket.source, ticket.path, forget_after],
        )
        conn.execute(f"DELETE FROM {PENDING_TABLE} WHERE file_id = ?", [ticket.file_id])
        conn.execute(
            f"""DELETE FROM {COMPLETED_TABLE} WHERE forget_after < ?
            AND file_id IN ({files_bridge.REGISTERED_IDS_SQL})""",
            [time.time()],
        )
        return files_bridge.file_record_in(conn, ticket.file_id)

    return await grouped_writes(datasette).write(write)


async def completion_state(datasette, file_id: str) -> str | None:
    """Where a file id stands: "registered" while datasette-files has the file,
    "deleted" when a token completed it and the file was deleted since, else None."""
    row = (
        await datasette.get_internal_database().execute(
            # One query, so a registration between two reads cannot look like a deletion.
            f"""SELECT :id IN ({files_bridge.REGISTERED_IDS_SQL}) AS registered,
            EXISTS(SELECT 1 FROM {COMPLETED_TABLE} WHERE file_id = :id) AS completed""",
            {"id": file_id},
        )
    ).first()
    if row["registered"]:
        return "registered"
    return "deleted" if row["completed"] else None


async def completed_uploads(datasette, source: str) -> list[dict]:
    """Completed rows of one source (cleanup checks those whose file was deleted)."""
    db = datasette.get_internal_database()
    if COMPLETED_TABLE not in await db.table_names():
        return []  # a database last served by a version without the table
    rows = await db.execute(
        f"SELECT * FROM {COMPLETED_TABLE} WHERE source = ? ORDER BY forget_after", [source]
    )
    return [dict(row) for row in rows.rows]


async def forget_completed(datasette, file_id: str) -> None:
    """Drop a completed row once its token can no longer be used and its key is clean."""
    await datasette.get_internal_database().execute_write(
        f"DELETE FROM {COMPLETED_TABLE} WHERE file_id = ?", [file_id]
    )


async def pending_uploads(
    datasette, source: str | None = None, expired_before: float | None = None
) -> list[dict]:
    """Pending uploads, optionally for one source and only those expired before a time."""
    sql = f"SELECT * FROM {PENDING_TABLE} WHERE 1 = 1"
    params: list = []
    if source is not None:
        sql += " AND source = ?"
        params.append(source)
    if expired_before is not None:
        sql += " AND expires_at < ?"
        params.append(expired_before)
    rows = await datasette.get_internal_database().execute(sql + " ORDER BY created_at", params)
    return [dict(row) for row in rows.rows]


async def pending_upload(datasette, file_id: str) -> dict | None:
    """The pending row for a file id, or None once it is completed, rejected or cancelled."""
    row = (
        await datasette.get_internal_database().execute(
            f"SELECT * FROM {PENDING_TABLE} WHERE file_id = ?", [file_id]
        )
    ).first()
    return dict(row) if row is not None else None
