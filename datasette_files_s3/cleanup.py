"""`files-s3 cleanup`: what abandoned uploads leave in the bucket, found and removed.

Three kinds of leftovers: incomplete multipart uploads (S3 lists them, with
when they started), objects sent again to the key of a file that was deleted
(our completed-uploads table names those keys), and objects that were
uploaded but never confirmed. Our
pending-uploads table in the internal database names most of the latter, and
those whose token has expired are deleted. A crash, or a database that lived
in memory, can lose a row; so objects are also recognised by key alone: every
key we write is `<prefix><ulid>/<filename>` and the ULID carries its creation
time. But "this database has no record of it" only means "orphan" when the
database is the one registry of every Datasette serving the prefix; a restored
backup, a recreated file or another process's database would make real files
look orphaned. So such objects are only counted, unless `--unrecorded` asks
for them to be deleted; even then any pending row (of any source), a file id
older than this database's record of the source, or an object younger than
any token that could still confirm it keeps the object. Nothing outside the
source's prefix, and nothing under it laid out otherwise, is touched; a file
datasette-files has registered is never deleted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from . import database, files_bridge
from .config import CLOCK_SKEW_SECONDS
from .errors import FilesS3Error, NotPermitted
from .keys import file_id_created_at, file_id_for_path
from .multipart import unless_upload_gone
from .tickets import CONFIRM_GRACE_SECONDS

_AGE_RE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> int:
    """`90s`, `30m`, `24h`, `7d`, `2w` or plain seconds, as seconds; ValueError otherwise."""
    match = _AGE_RE.match(str(text).lower())
    if not match:
        raise ValueError(f"{text!r} is not an age: use e.g. 30m, 24h or 7d")
    return int(match.group(1)) * _AGE_UNITS[match.group(2)]


@dataclass(frozen=True)
class Action:
    """One thing cleanup did (or would do): abort, delete or keep a key, and why."""

    kind: str  # "abort", "delete" or "keep"
    key: str
    size: int
    reason: str


@dataclass
class CleanupResult:
    """What cleanup did for one source."""

    bucket: str
    prefix: str
    dry_run: bool
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        """How many actions of this kind."""
        return sum(1 for action in self.actions if action.kind == kind)

    @property
    def bytes_freed(self) -> int:
        """Bytes in aborted uploads and deleted objects."""
        return sum(a.size for a in self.actions if a.kind in ("abort", "delete"))


def safe_key(prefix: str, path: str) -> str | None:
    """The key for a pending row's path, or None if it would land outside the prefix."""
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        return None
    return prefix + path


async def check_internal_database(datasette) -> None:
    """The internal database must be one `datasette serve` with datasette-files has used."""
    db = datasette.get_internal_database()
    tables = set(await db.table_names())
    missing = {files_bridge.FILES_TABLE, files_bridge.SOURCES_TABLE, database.PENDING_TABLE} - tables
    if missing:
        raise FilesS3Error(
            f"the internal database has no {', '.join(sorted(missing))} table: pass the file "
            "that `datasette serve --internal` uses with this plugin"
        )


async def object_size(storage, key_path: str) -> int | None:
    """The object's size, or None if there is no object."""
    head = await storage.head(key_path)
    return None if head is None else head.get("ContentLength", 0)


async def uploaded_bytes(storage, path: str, upload_id: str) -> int:
    """Bytes held by an incomplete multipart upload's parts."""
    return sum(part.get("Size", 0) for part in await storage.list_parts(path, upload_id))


async def clean_pending(storage, datasette, result: CleanupResult, now: float) -> tuple[set, dict]:
    """Delete objects of expired, unconfirmed uploads; returns (keys still in use,
    {upload id: key} of the expired multipart uploads)."""
    prefix, source = result.prefix, storage.source
    in_use, expired_upload_ids = set(), {}
    for row in await database.pending_uploads(datasette, source=source):
        key = safe_key(prefix, row["path"])
        if key is None:
            result.actions.append(Action("keep", row["path"], 0, "pending path is outside the prefix"))
            continue
        if await files_bridge.id_or_path_registered(datasette, source, row["file_id"], row["path"]):
            in_use.add(key)
            result.actions.append(Action("keep", key, 0, "registered file"))
            if not result.dry_run:
                await database.forget_pending(datasette, row["file_id"])
            continue
        if row["expires_at"] + CONFIRM_GRACE_SECONDS > now:
            in_use.add(key)
            result.actions.append(Action("keep", key, 0, "upload still within its token's lifetime"))
            continue
        if row["upload_id"]:
            expired_upload_ids[row["upload_id"]] = key
        size = await object_size(storage, row["path"])
        if size is not None:
            if not result.dry_run:
                await storage.delete_file(row["path"])
            result.actions.append(Action("delete", key, size, "uploaded but never confirmed"))
        if not result.dry_run:
            await database.forget_pending(datasette, row["file_id"])
    return in_use, expired_upload_ids


async def clean_completed(storage, datasette, result: CleanupResult, now: float) -> None:
    """Delete what sits at the key of a file that was completed and then deleted
    (its uploader may have sent it again with the same policy, which can never
    be registered), and forget completed rows whose token can no longer be used."""
    for row in await database.completed_uploads(datasette, storage.source):
        key = safe_key(result.prefix, row["path"])
        expired = row["forget_after"] < now
        if key is None or await files_bridge.id_or_path_registered(
            datasette, storage.source, row["file_id"], row["path"]
        ):
            if expired and not result.dry_run:
                await database.forget_completed(datasette, row["file_id"])
            continue
        size = await object_size(storage, row["path"])
        if size is not None:
            if not result.dry_run:
                await storage.delete_file(row["path"])
            result.actions.append(Action("delete", key, size, "sent again after its file was deleted"))
        if expired and not result.dry_run:
            await database.forget_completed(datasette, row["file_id"])


def unrecorded_min_age(config, older_than: int) -> int:
    """How old an object no table records must be before cleanup deletes it.

    Older than --older-than, and than the longest token this source signs plus
    the grace in which an expired token may still be confirmed, so an upload
    that could still be confirmed is never deleted. Clock skew is added because
    the ULID was stamped by the server's clock, not the one running cleanup.
    """
    longest_token = max(config.upload_expires, config.multipart_expires)
    return max(older_than, longest_token + CONFIRM_GRACE_SECONDS + CLOCK_SKEW_SECONDS)


@dataclass
class Tally:
    """How many objects, and their bytes, for a one-line note."""

    count: int = 0
    size: int = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.size += size


async def clean_unrecorded(
    storage, datasette, result: CleanupResult, older_than: int, now: float, in_use: set, delete: bool
) -> None:
    """Judge objects laid out as ours that this database neither registers nor has
    a pending row for: delete those old enough when `delete` (--unrecorded), else
    count them in one note."""
    prefix, source = result.prefix, storage.source
    known_since = await files_bridge.source_known_since(datasette, source)
    if known_since is None:
        result.notes.append(
            f"this internal database does not record when it first saw source '{source}', so objects "
            "it has no record of cannot be told from files registered elsewhere: left alone"
        )
        return
    judged = in_use | {action.key for action in result.actions}  # clean_pending's verdicts stand
    min_age = unrecorded_min_age(storage.config, older_than)
    not_ours, before_source, deletable = 0, Tally(), Tally()
    async for item in storage.objects():
        key = item["Key"]
        path = key[len(prefix) :] if key.startswith(prefix) else ""
        file_id = file_id_for_path(path)
        if file_id is None:
            not_ours += 1
            continue
        if key in judged or await files_bridge.id_or_path_registered(datasette, source, file_id, path):
            continue
        size = item.get("Size", 0)
        # A minute's margin: created_at has whole seconds, stamped by SQLite's clock.
        if file_id_created_at(file_id) < known_since + CLOCK_SKEW_SECONDS:
            before_source.add(size)
            continue
        reason = await unrecorded_keep_reason(datasette, file_id, item, min_age, now)
        if reason is None and delete:
            if not result.dry_run:
                await storage.delete_file(path)
            result.actions.append(
                Action("delete", key, size, "uploaded but never confirmed; no pending record")
            )
        elif reason is None:
            deletable.add(size)
        elif delete:
            result.actions.append(Action("keep", key, 0, reason))
    if not_ours:
        result.notes.append(
            f"{not_ours} object(s) under the prefix are not laid out as <ulid>/<filename>: left alone"
        )
    if before_source.count and delete:
        since = datetime.fromtimestamp(known_since, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        result.notes.append(
            f"{before_source.count} object(s) ({before_source.size:,} bytes) this internal database has no "
            f"record of were made before it first saw source '{source}' ({since}): kept, since they may "
            "be registered in a database this one never saw"
        )
    if deletable.count:
        result.notes.append(
            f"{deletable.count} object(s) ({deletable.size:,} bytes) laid out as <ulid>/<filename> are old "
            "enough and this internal database has no record of them: kept. --unrecorded deletes them; "
            "use it only if this file is the one registry of every Datasette serving this prefix"
        )


async def unrecorded_keep_reason(datasette, file_id: str, item: dict, min_age: int, now: float) -> str | None:
    """Why an object no table registers must be kept, or None if --unrecorded may delete it.

    A pending row of any source keeps it: two sources may share a prefix, and
    only the row's own source knows whether its token can still confirm. And
    it must be old by both its ULID and S3's LastModified, since a multipart
    upload completed in S3 moments ago may be about to be registered.
    """
    pending = await database.pending_upload(datasette, file_id)
    if pending is not None:
        return f"pending upload of source '{pending['source']}': left to that source's cleanup"
    made_age = now - file_id_created_at(file_id)
    written = item.get("LastModified")
    written_age = now - written.timestamp() if written is not None else 0
    age = min(made_age, written_age)
    if age >= min_age:
        return None
    where = " in the bucket" if written_age < made_age else ""
    return (
        f"not registered, no pending record, but only {age / 3600:.1f}h old{where}; "
        f"deleted after {min_age / 3600:.1f}h"
    )


def lifecycle_advice(prefix: str) -> str:
    """What to ask the bucket owner for when multipart uploads cannot be listed."""
    return (
        "listing multipart uploads is not permitted with these credentials (IAM cannot limit it to a "
        "prefix), so only the uploads this internal database records were aborted; ask the bucket owner "
        f"for a lifecycle rule with AbortIncompleteMultipartUpload under '{prefix}' for the rest "
        "(`files-s3 cleanup --lifecycle --dry-run` prints one)"
    )


async def abort_recorded(storage, result: CleanupResult, expired_ids: dict) -> None:
    """Abort the expired multipart uploads our pending table named, without listing the bucket."""
    for upload_id, key in expired_ids.items():
        path = key[len(result.prefix) :]
        size = await unless_upload_gone(uploaded_bytes(storage, path, upload_id))
        if size is None:
            continue  # completed or aborted since
        if not result.dry_run:
            await storage.abort_multipart(path, upload_id)
        result.actions.append(Action("abort", key, size, "incomplete multipart upload whose token expired"))


async def clean_multipart(
    storage, result: CleanupResult, older_than: int, now: float, in_use: set, expired_ids: dict
) -> None:
    """Abort incomplete multipart uploads that are old enough or whose token has expired.

    They are found by listing the prefix's uploads. Keys scoped to a prefix may
    not list them (ListBucketMultipartUploads has no s3:prefix condition in
    IAM): then the uploads our records name are aborted, and a note says who
    can clean the rest.
    """
    try:
        listed = await storage.multipart_uploads()
    except NotPermitted:
        await abort_recorded(storage, result, expired_ids)
        result.notes.append(lifecycle_advice(result.prefix))
        return
    for upload in listed:
        key, upload_id = upload["Key"], upload["UploadId"]
        if not key.startswith(result.prefix):
            continue
        path = key[len(result.prefix) :]
        age = now - upload["Initiated"].timestamp()
        if upload_id not in expired_ids:
            if key in in_use:
                result.actions.append(Action("keep", key, 0, "multipart upload still in use"))
                continue
            if age < older_than:
                result.actions.append(
                    Action("keep", key, 0, f"multipart upload started {age / 3600:.1f}h ago")
                )
                continue
        size = await uploaded_bytes(storage, path, upload_id)
        if not result.dry_run:
            await storage.abort_multipart(path, upload_id)
        started = upload["Initiated"].strftime("%Y-%m-%d %H:%M")
        result.actions.append(Action("abort", key, size, f"incomplete multipart upload started {started}"))


async def run_cleanup(
    storage, datasette, older_than: int, dry_run: bool, now: float, unrecorded: bool = False
) -> CleanupResult:
    """Clean one source. `datasette` is None when no internal database was given;
    `unrecorded` also deletes objects laid out as ours that it has no record of."""
    connection = await storage.connection()
    result = CleanupResult(bucket=connection.bucket, prefix=connection.prefix, dry_run=dry_run)
    in_use, expired_ids = set(), {}
    if datasette is None:
        result.notes.append(
            "no --internal database given: only incomplete multipart uploads are aborted; no object "
            "is deleted, since without it registered files cannot be told from abandoned uploads "
            "(pass the file `datasette serve --internal` uses)"
        )
    else:
        in_use, expired_ids = await clean_pending(storage, datasette, result, now)
        await clean_completed(storage, datasette, result, now)
        await clean_unrecorded(storage, datasette, result, older_than, now, in_use, unrecorded)
    await clean_multipart(storage, result, older_than, now, in_use, expired_ids)
    return result
