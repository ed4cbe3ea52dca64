// On datasette-files' page for an s3 source (loaded with the bundled uploader
// there, see multipart_views.uploader_swap_script): each file the uploader
// finishes joins the page's listing at once, its count and its table, as a
// reload would show it. The row follows datasette-files' _files_table.html.

const COUNT = /^\s*(\d+) files?\s*$/;
const EMPTY = "No files in this source.";
// datasette-files writes this rule only when the source already has files.
const TABLE_STYLE =
  ".files-listing td, .files-listing th { padding: 0.4em 0.5em; } .files-listing th { font-weight: bold; }" +
  " .files-listing td:last-child, .files-listing th:last-child { padding-right: 0; }";

document.addEventListener("files-s3-upload-done", ({ detail: { file } }) => {
  if (file) showFile(file);
});

/** Count `file` on the page, and list it if this is the listing's first page. */
export function showFile(file) {
  const body = listingBody();
  if (body.querySelector(`a[href="${CSS.escape(file.url)}"]`)) return; // listed already
  const count = countLine();
  const total = Number(count.textContent.match(COUNT)[1]) + 1;
  count.textContent = `${total} file${total === 1 ? "" : "s"}`;
  // Newest first, as datasette-files lists them; later pages keep their rows.
  if (Number(new URLSearchParams(location.search).get("page") || 1) > 1) return;
  body.prepend(fileRow(file));
}

/** The paragraph that counts the source's files ("72 files"). */
function countLine() {
  return [...document.querySelectorAll("p")].find((p) => COUNT.test(p.textContent));
}

/** The listing's <tbody>; an empty source's "No files" line becomes a count and an empty table. */
function listingBody() {
  const table = document.querySelector("table.files-listing");
  if (table) return table.tBodies[0];
  const empty = [...document.querySelectorAll("p")].find((p) => p.textContent.trim() === EMPTY);
  const count = document.createElement("p");
  count.textContent = "0 files";
  const style = document.createElement("style");
  style.textContent = TABLE_STYLE;
  const created = document.createElement("table");
  created.className = "files-listing";
  created.innerHTML = "<thead><tr><th>Filename</th><th>Type</th><th>Size</th><th>Uploaded</th></tr></thead><tbody></tbody>";
  if (empty) empty.replaceWith(count, style, created);
  else document.querySelector("datasette-files-s3-upload").after(count, style, created);
  return created.tBodies[0];
}

function fileRow(file) {
  const row = document.createElement("tr");
  const link = document.createElement("a");
  link.href = file.url;
  const thumbnail = document.createElement("img");
  thumbnail.src = file.thumbnail_url;
  thumbnail.alt = file.filename;
  thumbnail.loading = "lazy";
  thumbnail.style.cssText = "width:60px;height:40px;object-fit:contain;vertical-align:middle;border-radius:2px;margin-right:6px;";
  link.append(thumbnail, file.filename);
  const cells = [link, file.content_type || "", `${file.size} bytes`, file.created_at];
  for (const content of cells) {
    const cell = document.createElement("td");
    cell.append(content);
    row.append(cell);
  }
  return row;
}
