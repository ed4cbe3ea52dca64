"""A file's path inside the folder it was uploaded from ("photos/2024/a.jpg").

The uploader sends it at prepare for files of a dropped or chosen folder, and
it is kept in the file's metadata as `relative_path`. It is untrusted input
that names no key (the key is made from the file id and the filename), yet
whoever reads the metadata may join it to a directory: so it is relative, made
of plain names, never `..`, and ends with the file's own name.
"""

from __future__ import annotations

import re

from .errors import UploadRejected
from .keys import check_filename

# 512: within LONGEST_TOKEN even when every character is JSON-escaped (\uXXXX) in the token.
MAX_RELATIVE_PATH_CHARS = 512
# "C:" first: a Windows drive, an absolute path there.
_DRIVE = re.compile(r"^[A-Za-z]:$")


def check_relative_path(value, filename: str) -> str | None:
    """The relative path, or None when none was sent; UploadRejected says what to fix."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UploadRejected('relative_path must be text, e.g. "photos/2024/a.jpg"')
    if len(value) > MAX_RELATIVE_PATH_CHARS:
        raise UploadRejected(f"relative_path is too long: at most {MAX_RELATIVE_PATH_CHARS} characters")
    if value.startswith(("/", "\\")) or _DRIVE.match(value.split("/")[0]):
        raise UploadRejected(
            'relative_path must be relative to the folder, not absolute: e.g. "photos/a.jpg"'
        )
    segments = value.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise UploadRejected(
            "relative_path must be folder names and the file's name joined by '/', without '..', '.' or empty parts"
        )
    try:
        segments = [check_filename(segment) for segment in segments]
    except UploadRejected as ex:
        raise UploadRejected(
            f"relative_path: each of its parts must be a valid name, and one is not: {ex}"
        ) from None
    if segments[-1] != filename:
        raise UploadRejected(f"relative_path must end with the file's name, {filename!r}")
    return "/".join(segments)
