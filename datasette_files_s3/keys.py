"""Pure helpers for naming things in the bucket: file ids, object paths,
filenames that are safe to put in a key, and download headers.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from ulid import ULID

from .errors import UploadRejected

MAX_FILENAME_BYTES = 255
# What path_for makes: a lower-case ULID (Crockford base32; a first digit above 7
# would overflow 128 bits), a slash, then one path segment.
_PATH_RE = re.compile(r"([0-7][0-9a-hjkmnp-tv-z]{25})/([^/]+)")
_MIME_RE = re.compile(r"^[a-zA-Z0-9][\w.+-]*/[a-zA-Z0-9][\w.+-]*$")

# What a browser would render or run if served inline from the bucket's origin:
# markup (HTML, and any XML, which can carry script or an XSLT stylesheet),
# scripts and PDF. Besides these, every `+xml` type (SVG, XHTML, Atom, ...).
ACTIVE_CONTENT_TYPES = {
    "text/html",
    "text/xml",
    "application/xml",
    "text/xsl",
    "text/javascript",
    "text/ecmascript",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/pdf",
}
ACTIVE_EXTENSIONS = {
    *("html", "htm", "shtml", "xhtml", "xht", "mht", "mhtml"),
    *("svg", "svgz", "xml", "xsl", "xslt"),
    *("js", "mjs", "cjs", "pdf"),
}
SAFE_DOWNLOAD_TYPE = "application/octet-stream"
_TRAILING_DOTS_AND_SPACES = re.compile(r"[.\s]+$")


def new_file_id() -> str:
    """A datasette-files id, `df-` plus a lower-case ULID (sortable by time)."""
    return "df-" + str(ULID()).lower()


def path_for(file_id: str, filename: str) -> str:
    """The object's path below the source prefix, as datasette-files lays it out."""
    return f"{file_id.removeprefix('df-')}/{filename}"


def file_id_for_path(path: str) -> str | None:
    """The file id a path below the prefix was made for (path_for in reverse),
    or None when the path is not laid out as `<lower-case ULID>/<filename>`.

    The filename must be one check_filename accepts unchanged, as every path we
    write has: so `.`, `..` and other names no upload could have are not ours.
    """
    match = _PATH_RE.fullmatch(path)
    if not match or not is_checked_filename(match.group(2)):
        return None
    return "df-" + match.group(1)


def is_checked_filename(filename: str) -> bool:
    """Whether check_filename accepts this name as it is."""
    try:
        return check_filename(filename) == filename
    except UploadRejected:
        return False


def file_id_created_at(file_id: str) -> float:
    """When a file id was made, in seconds since the epoch: a ULID carries its time."""
    return ULID.from_str(file_id.removeprefix("df-")).timestamp


def check_filename(filename) -> str:
    """Return the filename, NFC-normalised, or raise UploadRejected saying what to fix.

    Any script is welcome (S3 keys are UTF-8); what could change the key's
    meaning or confuse a terminal is not: separators, dot-only names and
    control characters.
    """
    if not isinstance(filename, str) or not filename.strip():
        raise UploadRejected('filename is required: give the file\'s name, e.g. "report.pdf"')
    filename = unicodedata.normalize("NFC", filename)
    if "/" in filename or "\\" in filename:
        raise UploadRejected("filename must be a plain name without '/' or '\\'")
    if filename.strip(". ") == "":
        raise UploadRejected("filename must not be only dots, like '.' or '..'")
    if any(unicodedata.category(ch) == "Cs" for ch in filename):
        # A lone surrogate ("\ud800") is no character: it cannot be written as UTF-8.
        raise UploadRejected(
            "filename must not contain lone surrogates (\\ud800 to \\udfff): send valid text"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in filename):
        raise UploadRejected("filename must not contain control or invisible formatting characters")
    if len(filename.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise UploadRejected(
            f"filename is too long: at most {MAX_FILENAME_BYTES} bytes of UTF-8 "
            f"(this one is {len(filename.encode('utf-8'))})"
        )
    return filename


def check_content_type(content_type) -> str:
    """A bare MIME type (`image/png`), lower-cased; parameters are not accepted."""
    if content_type is None or content_type == "":
        return "application/octet-stream"
    if not isinstance(content_type, str) or not _MIME_RE.match(content_type) or len(content_type) > 127:
        raise UploadRejected(
            "content_type must be a MIME type like 'image/png' or 'application/octet-stream'"
        )
    return content_type.lower()


def media_type(content_type: str | None) -> str:
    """The bare MIME type, lower-cased: `Text/HTML; charset=utf-8` is `text/html`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_active_type(content_type: str | None) -> bool:
    """True for a type a browser would render or run: HTML, XHTML, SVG, any XML, JavaScript, PDF."""
    media = media_type(content_type)
    subtype = media.partition("/")[2]
    return media in ACTIVE_CONTENT_TYPES or subtype.endswith("+xml") or "javascript" in subtype


def saved_name(filename: str) -> str:
    """The name as a browser or Windows saves it: trailing dots and whitespace
    (any Unicode space: NBSP, ideographic space) dropped, so `page.html.` and
    `script.js ` are saved as `page.html` and `script.js`."""
    return _TRAILING_DOTS_AND_SPACES.sub("", filename)


def is_active_content(filename: str, content_type: str | None = None) -> bool:
    """True when either the name (as it would be saved) or the type says the
    browser would render or run it."""
    name = saved_name(filename)
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return extension in ACTIVE_EXTENSIONS or is_active_type(content_type)


def download_type(filename: str, content_type: str | None) -> str:
    """The Content-Type a download is served with: the recorded type, unless the
    name or the type is active content or the type is no clean MIME type; then
    application/octet-stream, which no browser renders."""
    media = media_type(content_type)
    if is_active_content(filename, media) or not (media.isascii() and _MIME_RE.match(media)):
        return SAFE_DOWNLOAD_TYPE
    return media


def attachment_disposition(filename: str) -> str:
    """`Content-Disposition: attachment` keeping the original name (RFC 6266 / 5987)."""
    fallback = "".join(ch if (ch.isascii() and (ch.isalnum() or ch in "._- ")) else "_" for ch in filename)
    # Trailing dots and spaces become "_", never stripped: stripping would turn
    # `script.js ` back into `script.js`, the extension the name hid.
    kept = saved_name(fallback)
    fallback = (kept + "_" * (len(fallback) - len(kept))).lstrip() or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
