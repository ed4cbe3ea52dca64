"""The source's limits told before anything is chosen, and a refusal in the
units the rows use (issue 22 item 8)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from e2e.page_helpers import PAGE, choose, make_file

LIMITED = {"config": {"max_file_size": "5MB", "allowed_content_types": ["text/plain", "image/*"]}}
LIMITS = "Each file up to 5.0 MB · Types: text/plain, image/*"


@pytest.mark.parametrize("site", [LIMITED], indirect=True)
@pytest.mark.parametrize("url", [PAGE, "/-/files/source/s3files"])
def test_limits_are_shown_and_narrow_the_file_picker(page, url):
    page.goto(url)
    expect(page.locator(".dfs3-limits")).to_have_text(LIMITS)
    chooser = page.locator("datasette-files-s3-upload input[type=file]")
    expect(chooser).to_have_attribute("accept", "text/plain,image/*")
    expect(chooser).to_have_accessible_description(LIMITS)


@pytest.mark.parametrize("site", [LIMITED], indirect=True)
def test_a_file_too_large_is_refused_in_the_rows_units(page, tmp_path):
    page.goto(PAGE)
    choose(page, make_file(tmp_path, "big.txt", 6_300_000))
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "error", timeout=30_000)
    expect(row.locator(".dfs3-detail")).to_have_text("0 B of 6.3 MB sent · 0%")
    expect(row.locator(".dfs3-error")).to_have_text(
        "File is too large: 6.3 MB, this source accepts at most 5.0 MB"
    )


def test_no_types_line_or_accept_where_the_source_takes_any_type(page):
    page.goto(PAGE)
    expect(page.locator(".dfs3-limits")).to_have_text("Each file up to 5.5 TB")
    assert page.locator("datasette-files-s3-upload input[type=file]").get_attribute("accept") is None
