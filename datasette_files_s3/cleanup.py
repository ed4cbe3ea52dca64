"""`files-s3 cleanup`: what abandoned uploads leave in the bucket, found and removed.

Two kinds of leftovers: incomplete multipart uploads (S3 lists them, with when
they started) and objects that were uploaded but never confirmed. Our
pending-uploads table in the internal database names most of the latter, but
it lives in memory unless `datasette serve --internal PATH` is used and a crash
can lose a row; so objects are also recognised by key alone. Every key we write
is `<prefix><ulid>/<filename>` and the ULID carries its creation time, so an
object laid out like that, not registered and older than any token that could
still confirm it, is an orphan. Nothing outside the source's prefix, and
nothing under it laid out otherwise, is touched; a file datasette-files has
registered is never deleted.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from . import bucket_admin, database
from .errors import FilesS3Error
from .keys import file_id_created_at, file_id_for_path
from .uploads import CLOCK_SKEW_SECONDS, CONFIRM_GRACE_SECONDS

LIFECYCLE_RULE_ID = "datasette-files-s3-abort-multipart"
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
    missing = {"datasette_files", "datasette_files_sources", database.PENDING_TABLE} - tables
    if missing:
        raise FilesS3Error(
            f"the internal database has no {', '.join(sorted(missing))} table: pass the file "
            "that `datasette serve --internal` uses with this plugin"
        )


async def is_registered(datasette, source: str, file_id: str, path: str) -> bool:
    """Whether datasette-files knows this file, by id or by its path in this source."""
    row = (
        await datasette.get_internal_database().execute(
            """
            SELECT 1 FROM datasette_files f JOIN datasette_files_sources s ON s.id = f.source_id
            WHERE f.id = ? OR (s.slug = ? AND f.path = ?)
            """,
            [file_id, source, path],
        )
    ).first()
    return row is not None


async def object_size(storage, key_path: str) -> int | None:
    """The object's size, or None if there is no object."""
    head = await storage.head(key_path)
    return None if head is None else head.get("ContentLength", 0)


async def pages(storage, operation: str, params: dict, markers: dict[str, str]) -> AsyncIterator[dict]:
    """Every page of a paged S3 listing. `markers` maps each request parameter that
    asks for the next page to the answer field holding its value."""
    next_page: dict = {}
    while True:
        answer = await storage.call(operation, **params, **next_page)
        yield answer
        if not answer.get("IsTruncated"):
            return
        next_page = {parameter: answer[field] for parameter, field in markers.items()}


async def list_multipart_uploads(storage, prefix: str) -> list[dict]:
    """Every incomplete multipart upload under the prefix (all pages)."""
    markers = {"KeyMarker": "NextKeyMarker", "UploadIdMarker": "NextUploadIdMarker"}
    return [
        upload
        async for answer in pages(storage, "list_multipart_uploads", {"Prefix": prefix}, markers)
        for upload in answer.get("Uploads", [])
    ]


async def uploaded_bytes(storage, key: str, upload_id: str) -> int:
    """Bytes held by an incomplete multipart upload's parts."""
    params, markers = {"Key": key, "UploadId": upload_id}, {"PartNumberMarker": "NextPartNumberMarker"}
    return sum(
        [
            part.get("Size", 0)
            async for answer in pages(storage, "list_parts", params, markers)
            for part in answer.get("Parts", [])
        ]
    )


async def objects_under(storage, prefix: str) -> AsyncIterator[dict]:
    """Every object under the prefix, a page at a time (a bucket may hold millions)."""
    markers = {"ContinuationToken": "NextContinuationToken"}
    async for answer in pages(storage, "list_objects_v2", {"Prefix": prefix}, markers):
        for item in answer.get("Contents", []):
            yield item


async def clean_pending(storage, datasette, result: CleanupResult, now: float) -> tuple[set, set]:
    """Delete objects of expired, unconfirmed uploads; returns (keys still in use, expired upload ids)."""
    prefix, source = result.prefix, storage.source
    in_use, expired_upload_ids = set(), set()
    for row in await database.pending_uploads(datasette, source=source):
        key = safe_key(prefix, row["path"])
        if key is None:
            result.actions.append(Action("keep", row["path"], 0, "pending path is outside the prefix"))
            continue
        if await is_registered(datasette, source, row["file_id"], row["path"]):
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
            expired_upload_ids.add(row["upload_id"])
        size = await object_size(storage, row["path"])
        if size is not None:
            if not result.dry_run:
                await storage.delete_file(row["path"])
            result.actions.append(Action("delete", key, size, "uploaded but never confirmed"))
        if not result.dry_run:
            await database.forget_pending(datasette, row["file_id"])
    return in_use, expired_upload_ids


def unrecorded_min_age(config, older_than: int) -> int:
    """How old an object no table records must be before cleanup deletes it.

    Older than --older-than, and than the longest token this source signs plus
    the grace in which an expired token may still be confirmed, so an upload
    that could still be confirmed is never deleted. Clock skew is added because
    the ULID was stamped by the server's clock, not the one running cleanup.
    """
    longest_token = max(config.upload_expires, config.multipart_expires)
    return max(older_than, longest_token + CONFIRM_GRACE_SECONDS + CLOCK_SKEW_SECONDS)


async def clean_unrecorded(
    storage, datasette, result: CleanupResult, older_than: int, now: float, in_use: set
) -> None:
    """Delete old objects laid out as ours that are neither registered nor pending."""
    prefix, source = result.prefix, storage.source
    judged = in_use | {action.key for action in result.actions}  # clean_pending's verdicts stand
    min_age = unrecorded_min_age(storage.config, older_than)
    not_ours = 0
    async for item in objects_under(storage, prefix):
        key = item["Key"]
        path = key[len(prefix) :] if key.startswith(prefix) else ""
        file_id = file_id_for_path(path)
        if file_id is None:
            not_ours += 1
        elif key not in judged and not await is_registered(datasette, source, file_id, path):
            age = now - file_id_created_at(file_id)
            await delete_if_old_enough(storage, result, path, item.get("Size", 0), age, min_age)
    if not_ours:
        result.notes.append(
            f"{not_ours} object(s) under the prefix are not laid out as <ulid>/<filename>: left alone"
        )


async def delete_if_old_enough(
    storage, result: CleanupResult, path: str, size: int, age: float, min_age: int
) -> None:
    """Delete one unrecorded object if it is old enough, else record that it is kept."""
    key = result.prefix + path
    if age < min_age:
        reason = (
            f"not registered, no pending record, but only {age / 3600:.1f}h old; "
            f"deleted after {min_age / 3600:.1f}h"
        )
        result.actions.append(Action("keep", key, 0, reason))
        return
    if not result.dry_run:
        await storage.delete_file(path)
    result.actions.append(Action("delete", key, size, "uploaded but never confirmed; no pending record"))


async def clean_multipart(
    storage, result: CleanupResult, older_than: int, now: float, in_use: set, expired_ids: set
) -> None:
    """Abort incomplete multipart uploads that are old enough or whose token has expired."""
    for upload in await list_multipart_uploads(storage, result.prefix):
        key, upload_id = upload["Key"], upload["UploadId"]
        if not key.startswith(result.prefix):
            continue
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
        size = await uploaded_bytes(storage, key, upload_id)
        if not result.dry_run:
            await storage.call("abort_multipart_upload", Key=key, UploadId=upload_id)
        started = upload["Initiated"].strftime("%Y-%m-%d %H:%M")
        result.actions.append(Action("abort", key, size, f"incomplete multipart upload started {started}"))


async def run_cleanup(storage, datasette, older_than: int, dry_run: bool, now: float) -> CleanupResult:
    """Clean one source. `datasette` is None when no internal database was given."""
    connection = await storage.connection()
    result = CleanupResult(bucket=connection.bucket, prefix=connection.prefix, dry_run=dry_run)
    in_use, expired_ids = set(), set()
    if datasette is None:
        result.notes.append(
            "no --internal database given: only incomplete multipart uploads are aborted; no object "
            "is deleted, since without it registered files cannot be told from abandoned uploads "
            "(pass the file `datasette serve --internal` uses)"
        )
    else:
        in_use, expired_ids = await clean_pending(storage, datasette, result, now)
        await clean_unrecorded(storage, datasette, result, older_than, now, in_use)
    await clean_multipart(storage, result, older_than, now, in_use, expired_ids)
    return result


def lifecycle_rule(prefix: str, older_than: int) -> dict:
    """A lifecycle rule aborting incomplete multipart uploads under the prefix (S3 counts whole days)."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": prefix},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": max(1, math.ceil(older_than / 86400))},
    }


def merge_lifecycle_rules(existing: list[dict], rule: dict) -> list[dict]:
    """The bucket's lifecycle rules with ours added or replaced; others kept as they were."""
    return [r for r in existing if r.get("ID") != rule["ID"]] + [rule]


async def lifecycle_plan(storage, older_than: int) -> tuple[list[dict], list[dict]]:
    """(current rules, rules after adding ours)."""
    connection = await storage.connection()
    current = await bucket_admin.get_lifecycle_rules(storage)
    return current, merge_lifecycle_rules(current, lifecycle_rule(connection.prefix, older_than))
