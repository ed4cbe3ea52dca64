"""Sizes in refusals read as the uploader's rows write them (datasette_files_s3/sizes.py;
e2e/test_progress_display.py checks the same numbers against the page's formatBytes)."""

from __future__ import annotations

import pytest

from datasette_files_s3.sizes import format_bytes, too_large


@pytest.mark.parametrize(
    "size, words",
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1050, "1.1 kB"),
        (6_300_000, "6.3 MB"),
        (5 * 1024**4, "5.5 TB"),
    ],
)
def test_format_bytes_uses_decimal_units_like_the_rows(size, words):
    assert format_bytes(size) == words


def test_too_large_speaks_in_row_units():
    assert too_large(6_300_000, 5_000_000) == "File is too large: 6.3 MB, this source accepts at most 5.0 MB"


def test_too_large_gives_exact_bytes_when_both_round_alike():
    assert too_large(5_000_001, 5_000_000) == (
        "File is too large: 5,000,001 bytes, this source accepts at most 5,000,000 bytes"
    )
