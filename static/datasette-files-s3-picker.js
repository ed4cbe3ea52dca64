// datasette-files' <datasette-file-picker> (the file dialog of its cell editor,
// and of Datasette's row-edit form for `file` columns) uploads with one fetch
// POST of a form to prepare's upload_url: no checksum, no multipart, nothing
// over 5 GiB, and nothing at all on a store that refuses POST. For s3 sources
// this hands the picker's upload to the bundled upload machine instead, so the
// file goes straight to the bucket exactly as the bundled uploader sends it.
// Other sources keep the picker's own upload.
//
// The picker has no public upload hook, so this wraps its _handleUpload and
// uses the few private members named in PICKER_MEMBERS; files_bridge.py lists
// the same names and tests/test_datasette_files_contract.py checks that
// datasette-files' picker still has them.

import { formatBytes, waitingText } from "./progress-display.js";
import { DatasetteApi, FileUpload, ResumeStore } from "./upload-machine.js";
import { RequestQueue, STALL_TIMEOUT_MS } from "./upload-queue.js";

export const PICKER_MEMBERS = ["_handleUpload", "_fileInput", "_sourceSelect", "_uploadBtn", "_uploadStatus", "_done"];

// One queue for every picker on the page: parts in flight at once, as the uploader's default.
const queue = new RequestQueue(4);

/**
 * Route the picker's uploads to s3 sources through the upload machine.
 * @param {{sources: Object<string, Object<string, string>>}} config
 *   sources: the direct-upload s3 sources this actor may upload to, as the page was served,
 *   each with the attributes a <datasette-files-s3-upload> for it would have
 */
export async function takeOverPickerUploads({ sources }) {
  const Picker = await customElements.whenDefined("datasette-file-picker");
  const stockUpload = Picker.prototype._handleUpload;
  if (typeof stockUpload !== "function" || stockUpload.takenOver) return;
  function handleUpload() {
    const file = this._fileInput.files[0];
    const slug = this._sourceSelect.value;
    // Own sources only: a source named "constructor" or "toString" is no s3 source of ours.
    const attributes = Object.hasOwn(sources, slug) ? sources[slug] : null;
    // No file chosen: the picker says so itself.
    if (!file || !attributes) return stockUpload.call(this);
    return uploadToBucket(this, file, attributes);
  }
  handleUpload.takenOver = true;
  Picker.prototype._handleUpload = handleUpload;
}

async function uploadToBucket(picker, file, attributes) {
  const slug = attributes.source;
  const upload = new FileUpload(file, {
    api: new DatasetteApi(attributes["base-url"], slug),
    queue,
    resume: new ResumeStore(slug),
    threshold: Number(attributes["multipart-threshold"]),
    stallTimeout: STALL_TIMEOUT_MS,
    corsHelp: (origin) => `${attributes["cors-command"]} --origin ${origin} --apply`,
    checksums: attributes.checksum !== "none",
  });
  const status = picker._uploadStatus;
  const line = document.createElement("div");
  line.className = "uploading";
  status.replaceChildren(line);
  const draw = () => {
    const percent = file.size ? Math.floor((upload.loaded / file.size) * 100) : 0;
    const parts = [`Uploading ${formatBytes(upload.loaded)} of ${formatBytes(file.size)}`, `${percent}%`];
    if (upload.waiting) parts.push(waitingText(upload.waiting));
    line.textContent = parts.join(" · ");
  };
  upload.addEventListener("change", draw);
  draw();
  picker._uploadBtn.disabled = true;
  // Closing the picker mid-upload stops it (a multipart upload is aborted in S3).
  picker.result.then(() => upload.cancel());
  await upload.start();
  upload.removeEventListener("change", draw);
  if (upload.status === "done") {
    picker._done(upload.result.id);
    return;
  }
  picker._uploadBtn.disabled = false;
  if (upload.status !== "error") {
    status.replaceChildren();
    return;
  }
  const error = document.createElement("div");
  error.className = "error";
  error.textContent = upload.error.message;
  if (upload.error.help) {
    const help = document.createElement("code");
    help.textContent = upload.error.help;
    error.append(document.createElement("br"), "To fix it, run: ", help);
  }
  status.replaceChildren(error);
}
