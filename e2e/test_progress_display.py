"""How progress reads on the page (static/progress-display.js), run in real Chromium."""

from __future__ import annotations

from datasette_files_s3.sizes import format_bytes
from e2e.page_helpers import PAGE

FORMAT_BYTES = """async () => {
  const { formatBytes } = await import("/-/static-plugins/datasette_files_s3/progress-display.js");
  return [0, 11.051944137448064, 999.4, 999.6, 1000, 1500, 315_000_000].map(formatBytes);
}"""


def test_a_speed_under_a_kilobyte_per_second_is_shown_in_whole_bytes(page):
    page.goto(PAGE)
    assert page.evaluate(FORMAT_BYTES) == ["0 B", "11 B", "999 B", "1.0 kB", "1.0 kB", "1.5 kB", "315 MB"]


SIZES = [0, 999, 1000, 1049, 1050, 1500, 6_250_000, 6_300_000, 9_950_000, 999_499, 999_500_000, 5 * 1024**4]


def test_server_errors_write_sizes_as_the_rows_do(page):
    """A refusal's sizes (datasette_files_s3/sizes.py) read like the row beside it."""
    page.goto(PAGE)
    shown = page.evaluate(
        """async (sizes) => {
            const { formatBytes } = await import("/-/static-plugins/datasette_files_s3/progress-display.js");
            return sizes.map(formatBytes);
        }""",
        SIZES,
    )
    assert [format_bytes(size) for size in SIZES] == shown
