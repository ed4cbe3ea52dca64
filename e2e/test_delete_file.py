"""Delete from an s3 file's page, in Chromium: the "File actions" menu links to a
confirmation page whose POST form deletes the file and its object, then shows the
source's page. Actors without files-delete see no Delete."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from e2e.page_helpers import PAGE, choose


@pytest.fixture
def uploaded(page, tmp_path) -> str:
    """The id of a file alice uploaded through the bundled uploader."""
    path = tmp_path / "notes.txt"
    path.write_text("to be deleted\n")
    page.goto(PAGE)
    choose(page, str(path))
    row = page.locator(".dfs3-file")
    expect(row).to_have_attribute("data-status", "done", timeout=30_000)
    return row.get_attribute("data-file-id")


def bucket_keys(browser_s3, site) -> list[str]:
    return [o["Key"] for o in browser_s3.client().list_objects_v2(Bucket=site.bucket).get("Contents", [])]


def test_delete_from_the_file_page_removes_the_file_and_its_object(page, site, browser_s3, uploaded):
    assert len(bucket_keys(browser_s3, site)) == 1
    page.goto(f"/-/files/{uploaded}")
    page.locator("details.actions-menu-links summary").click()
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading")).to_have_text("Delete notes.txt?")
    page.get_by_role("button", name="Delete notes.txt").click()

    expect(page).to_have_url(f"{site.url}/-/files/source/s3files")
    expect(page.get_by_text("Deleted notes.txt")).to_be_visible()
    assert bucket_keys(browser_s3, site) == []
    assert page.request.get(f"/-/files/{uploaded}.json").status == 404


def test_no_delete_for_an_actor_without_files_delete(chromium, site, page, uploaded):
    anonymous = chromium.new_context(base_url=site.url)  # may browse; files-delete needs an actor
    try:
        other = anonymous.new_page()
        other.goto(f"/-/files/{uploaded}")
        expect(other.get_by_role("heading", name="notes.txt")).to_be_visible()
        expect(other.get_by_role("link", name="Delete")).to_have_count(0)
        assert other.goto(f"/-/files-s3/delete/{uploaded}").status == 403
    finally:
        anonymous.close()
