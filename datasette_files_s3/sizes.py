"""Sizes in the words the uploader's rows use: decimal units, "6.3 MB", as
`formatBytes` in static/progress-display.js writes them. An error that says
"6291456 bytes" next to a row that reads "6.3 MB" makes the user do arithmetic."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

UNITS = ("kB", "MB", "GB", "TB")


def format_bytes(size: int) -> str:
    """`size` bytes as the rows show it: "999 B", "1.5 kB", "315 MB"."""
    if size < 1000:
        return f"{size} B"
    # Floats, as in JavaScript, so that 9,950,000 is the 9.9499... MB the page rounds down.
    value = size / 1000
    unit = 0
    while value >= 1000 and unit < len(UNITS) - 1:
        value /= 1000
        unit += 1
    # toFixed rounds the float's exact value, halves up; Python's format rounds halves to even.
    places = Decimal("0.1") if value < 10 else Decimal("1")
    return f"{Decimal(value).quantize(places, rounding=ROUND_HALF_UP)} {UNITS[unit]}"


def too_large(size: int, most: int) -> str:
    """Why a file of `size` bytes is refused by a source that takes at most `most`:
    in row units, or in exact bytes where both round to the same words."""
    said, limit = format_bytes(size), format_bytes(most)
    if said == limit:
        said, limit = f"{size:,} bytes", f"{most:,} bytes"
    return f"File is too large: {said}, this source accepts at most {limit}"
