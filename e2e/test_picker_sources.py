"""Which of the picker's sources static/datasette-files-s3-picker.js takes over,
run in real Chromium against a stand-in for datasette-files' picker: only the s3
sources the page handed it, never a name its config object merely inherits."""

from __future__ import annotations

from e2e.page_helpers import PAGE

# A stand-in <datasette-file-picker> with the members the take-over uses; its own
# upload records the source it was asked for.
WHICH_UPLOAD = """async (slug) => {
  if (!customElements.get("datasette-file-picker")) {
    customElements.define("datasette-file-picker", class extends HTMLElement {
      _handleUpload() { window.stockUploads.push(this._sourceSelect.value); }
    });
  }
  window.stockUploads = [];
  const { takeOverPickerUploads } = await import("/-/static-plugins/datasette_files_s3/datasette-files-s3-picker.js");
  await takeOverPickerUploads({ sources: {} });
  const picker = document.createElement("datasette-file-picker");
  picker._fileInput = { files: [new File(["x"], "x.txt", { type: "text/plain" })] };
  picker._sourceSelect = { value: slug };
  try {
    await picker._handleUpload();
  } catch (error) {
    return `taken over, and failed: ${error}`;
  }
  return window.stockUploads.join() === slug ? "stock" : "taken over";
}"""


def test_a_source_named_like_an_object_property_keeps_the_stock_upload(page):
    page.goto(PAGE)
    for slug in ("constructor", "toString", "hasOwnProperty", "files"):
        assert page.evaluate(WHICH_UPLOAD, slug) == "stock", slug
