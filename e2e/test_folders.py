"""Folders (issue 22 item 7): a chosen or dropped folder uploads each of its
files, each row showing its path in the folder; before, a dropped folder was
one row, "photos · 0 B", that failed."""

import httpx
import pytest
from playwright.sync_api import expect

from e2e.page_helpers import PAGE, wait_until

# Chromium's entries for a dropped folder, built in the page: Playwright cannot
# drag a folder in from the operating system, so the drop's DataTransfer gets
# these `items` (the FileSystemEntry API a real folder drop gives), and its
# `files` what Chromium lists for a folder: one empty file named for it.
DROP_A_FOLDER = """(target) => {
    const fileEntry = (path, text) => ({
        isFile: true, isDirectory: false, fullPath: path,
        file: (resolve) => resolve(new File([text], path.split("/").pop(), {type: "text/plain"})),
    });
    const folderEntry = (path, children) => ({
        isFile: false, isDirectory: true, fullPath: path,
        // Entries come in batches, then an empty one, as readEntries gives them.
        createReader: () => { const batches = [children.slice(0, 1), children.slice(1), []];
                              return {readEntries: (resolve) => resolve(batches.shift())}; },
    });
    const photos = folderEntry("/photos", [
        fileEntry("/photos/a.txt", "first"),
        folderEntry("/photos/2024", [fileEntry("/photos/2024/b.txt", "second")]),
    ]);
    const transfer = new DataTransfer();
    transfer.items.add(new File([], "photos"));
    Object.defineProperty(transfer, "items", {value: [{kind: "file", webkitGetAsEntry: () => photos}]});
    document.querySelector(target).dispatchEvent(
        new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


def record_relative_paths(page):
    """The relative_path each prepare (single, batched or multipart create) sent to Datasette."""
    sent = []

    def on_request(request):
        if request.method == "POST" and ("/-/prepare" in request.url or "/multipart/create" in request.url):
            body = request.post_data_json
            for item in body.get("files", [body]) if isinstance(body, dict) else []:
                sent.append(item.get("relative_path"))

    page.on("request", on_request)
    return sent


def uploaded_rows(page, site, names):
    rows = page.locator(".dfs3-file")
    expect(rows).to_have_count(len(names), timeout=30_000)
    for name in names:
        expect(rows.filter(has_text=name)).to_have_attribute("data-status", "done", timeout=30_000)
    return rows


# On the drop zone, and anywhere else on the page.
@pytest.mark.parametrize("target", [".dfs3-drop", "h1"])
def test_a_dropped_folder_uploads_its_files_with_their_paths(page, site, target):
    sent = record_relative_paths(page)
    page.goto(PAGE)
    expect(page.locator(".dfs3-drop")).to_be_visible()
    page.evaluate(DROP_A_FOLDER, target)
    rows = uploaded_rows(page, site, ["photos/a.txt", "photos/2024/b.txt"])
    # Kept in each file's metadata (tests/test_relative_paths.py checks the server's side).
    assert sorted(sent) == ["photos/2024/b.txt", "photos/a.txt"]
    file_id = rows.filter(has_text="photos/2024/b.txt").get_attribute("data-file-id")
    info = httpx.get(f"{site.url}/-/files/{file_id}.json").json()
    assert info["filename"] == "b.txt" and info["size"] == len("second")


def test_choose_folder_uploads_a_folders_files(page, site, tmp_path):
    folder = tmp_path / "reports"
    (folder / "2024").mkdir(parents=True)
    (folder / "summary.txt").write_text("summary")
    (folder / "2024" / "q1.txt").write_text("first quarter")
    sent = record_relative_paths(page)
    # Listening before the page loads: a listener added just before the click
    # can lose the race to Chromium's chooser (see e2e/test_accessibility.py).
    choosers = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    page.goto(PAGE)
    page.get_by_role("button", name="Choose folder").click()
    wait_until(page, lambda: choosers)
    choosers[0].set_files(str(folder))
    uploaded_rows(page, site, ["reports/summary.txt", "reports/2024/q1.txt"])
    assert sorted(sent) == ["reports/2024/q1.txt", "reports/summary.txt"]
