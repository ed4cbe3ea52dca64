// <datasette-files-s3-upload source="..."> : the bundled uploader's rendering.
// Choosing files, drawing rows, progress, the buttons (cancel, pause, resume,
// retry) and the summary. What
// to send is upload-machine.js, which file starts when is upload-scheduler.js,
// and how requests go out is upload-queue.js.

import { Announcer, announcement, VISUALLY_HIDDEN } from "./announcer.js";
import { formatBytes, formatDuration, SpeedMeter, waitingText } from "./progress-display.js";
import { acceptedTypes, limitsText } from "./source-limits.js";
import { DatasetteApi, FileUpload, ResumeStore } from "./upload-machine.js";
import { RequestQueue, STALL_TIMEOUT_MS } from "./upload-queue.js";
import { SMALL_FILES_PARALLEL, UploadScheduler, sameFile } from "./upload-scheduler.js";
import { discardUnfinished, findUnfinished } from "./unfinished-uploads.js";
import { ScreenWakeLock } from "./wake-lock.js";
import { filesFromDrop, relativePath } from "./dropped-folders.js";

const MIB = 1024 * 1024;
// A finished batch of up to this many uploaded files keeps their rows; more fold into the summary.
const FOLD_AFTER = 5;
// Progress is drawn at most this often (scheduleUpdate).
const DRAW_EVERY_MS = 100;

const STYLE = `
datasette-files-s3-upload { display: block; font-size: 0.95em; }
datasette-files-s3-upload [hidden] { display: none !important; }
/* min-height: the space datasette-files-s3-upload.css reserves before this module runs. */
.dfs3-drop { border: 2px dashed #999; border-radius: 8px; padding: 1.5em; text-align: center;
  box-sizing: border-box; min-height: 10em; }
.dfs3-limits { color: #555; font-size: 0.9em; margin: 0.3em 0 0; }
.dfs3-drop.dfs3-over { border-color: #2563eb; background: #eff6ff; }
.dfs3-files { list-style: none; padding: 0; margin: 1em 0; }
.dfs3-files:empty { display: none; }
/* content-visibility: rows scrolled out of view are not laid out or painted at each
   progress step (hundreds of small files at once); they stay in the accessibility tree. */
.dfs3-file { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 0.75em; margin-bottom: 0.5em;
  content-visibility: auto; contain-intrinsic-size: auto 4.5em; }
.dfs3-file-head { display: flex; gap: 0.75em; align-items: baseline; }
.dfs3-name { font-weight: 600; flex: 1; overflow-wrap: anywhere; }
.dfs3-file progress, .dfs3-total progress { width: 100%; height: 0.8em; }
.dfs3-detail { color: #555; font-size: 0.9em; }
.dfs3-error { color: #b91c1c; white-space: pre-wrap; }
.dfs3-error code { display: block; background: #f3f4f6; color: #111; padding: 0.4em; margin-top: 0.3em; user-select: all; }
.dfs3-file[data-status="done"] .dfs3-name::before { content: "\\2713  "; color: #15803d; }
.dfs3-file[data-status="error"] { border-color: #b91c1c; }
.dfs3-file[data-status="error"] .dfs3-state { color: #b91c1c; font-weight: 600; }
.dfs3-file[data-status="error"] progress { accent-color: #b91c1c; }
.dfs3-file[data-status="cancelled"] progress { accent-color: #9ca3af; }
.dfs3-summary { border-top: 1px solid #ddd; padding-top: 0.5em; overflow-wrap: anywhere; }
.dfs3-unfinished { border: 1px solid #f59e0b; background: #fffbeb; border-radius: 6px; padding: 0.5em 0.75em; margin-top: 1em; }
.dfs3-unfinished ul { margin: 0.3em 0; padding-left: 1.2em; }
.dfs3-status { ${VISUALLY_HIDDEN} }
`;

const LABELS = {
  pending: "Waiting",
  uploading: "Uploading",
  paused: "Paused",
  done: "Uploaded",
  error: "Failed",
  cancelled: "Cancelled",
};

// A row's buttons: what each does to its upload, and when it shows. Each is
// named for its file ("Pause big.bin"): a list of "Pause" buttons says nothing
// to a screen reader.
const ROW_BUTTONS = [
  { name: "pause", label: "Pause", act: "pause", shown: (u) => u.status === "pending" || u.status === "uploading" },
  { name: "resume", label: "Resume", act: "resume", shown: (u) => u.status === "paused" },
  { name: "retry", label: "Retry", act: "resume", shown: (u) => u.status === "error" && u.canResume },
  { name: "cancel", label: "Cancel", act: "cancel", shown: (u) => !u.settled },
];

/**
 * Attributes: source (required), base-url (default "/"), multipart-threshold
 * (bytes, default 16 MiB, 64 MiB with checksum="none"), concurrency (parts in flight, default 4),
 * parallel-files (default 3; 12 while every file in flight is at most 1 MiB), retries (per request, default 6), stall-timeout
 * (seconds a request to the bucket may go without progress before it is
 * retried, default 60).
 * Events (bubbling, composed): files-s3-upload-start, files-s3-upload-done
 * (detail.file = the datasette-files file JSON), files-s3-upload-error
 * (detail.error), files-s3-upload-cancelled, files-s3-uploads-finished (detail.results).
 */
export class DatasetteFilesS3Upload extends HTMLElement {
  connectedCallback() {
    this.acceptFilesAnywhere();
    if (this.scheduler) {
      if (!this.ticker) this.startTicker();
      return;
    }
    const source = this.source;
    const api = (this.api = new DatasetteApi(this.getAttribute("base-url") || "/", source));
    const queue = new RequestQueue(Number(this.getAttribute("concurrency")) || 4);
    const resume = (this.resume = new ResumeStore(source));
    const retries = Number(this.getAttribute("retries")) || 6;
    const stallTimeout = Number(this.getAttribute("stall-timeout")) * 1000 || STALL_TIMEOUT_MS;
    // "none" for sources whose store refuses x-amz-checksum-* (the source's checksum option).
    const checksums = this.getAttribute("checksum") !== "none";
    // The source's defaults (config.py): with checksums a single POST is hashed
    // whole before it is sent, so files go multipart sooner.
    const threshold = Number(this.getAttribute("multipart-threshold")) || (checksums ? 16 : 64) * MIB;
    // The server's command names its config file (-c): without it the command finds no source.
    const corsCommand = this.getAttribute("cors-command") || `datasette files-s3 cors ${source}`;
    const corsHelp = (origin) => `${corsCommand} --origin ${origin} --apply`;
    // An explicit parallel-files holds for small files too.
    const parallelFiles = Number(this.getAttribute("parallel-files"));
    this.scheduler = new UploadScheduler({
      parallel: parallelFiles || 3,
      smallParallel: parallelFiles || SMALL_FILES_PARALLEL,
      createUpload: (file) => new FileUpload(file, { api, queue, resume, threshold, retries, stallTimeout, corsHelp, checksums }),
    });
    this.scheduler.addEventListener("start", ({ detail: { upload } }) =>
      this.emit("files-s3-upload-start", { name: upload.file.name, size: upload.file.size }),
    );
    this.scheduler.addEventListener("settled", ({ detail: { upload } }) => this.settled(upload));
    this.scheduler.addEventListener("finished", () => this.summarize());
    // Closing or leaving the page stops every upload: ask first while any runs.
    window.addEventListener("beforeunload", (event) => {
      if (this.isConnected && this.scheduler.totals().busy) event.preventDefault();
    });
    // What the page draws for each upload: its row, its speed, and whether it needs a redraw.
    this.views = new Map();
    this.meter = new SpeedMeter();
    this.wakeLock = new ScreenWakeLock();
    this.unfinished = [];
    // Once a second while anything is unfinished: a countdown ticks and a speed
    // fades to nothing while no byte moves (no progress event comes then).
    this.startTicker();
    this.render();
    this.listUnfinished();
  }

  /**
   * Files dropped anywhere on the page are added here, unless something on
   * the page (this element's own box, another drop target) took the drop.
   */
  acceptFilesAnywhere() {
    const carriesFiles = (event) => event.dataTransfer?.types?.includes("Files");
    this.onPageDragOver ??= (event) => {
      if (carriesFiles(event) && !event.defaultPrevented) event.preventDefault();
    };
    this.onPageDrop ??= (event) => {
      if (event.defaultPrevented || !carriesFiles(event)) return;
      event.preventDefault();
      filesFromDrop(event.dataTransfer).then((files) => this.add(files));
    };
    // Files pasted (a screenshot, files copied in a file manager) are added
    // too, unless they are pasted into something that takes them itself.
    this.onPagePaste ??= (event) => {
      const files = [...(event.clipboardData?.files || [])];
      if (event.defaultPrevented || !files.length || takesPastes(event.target)) return;
      event.preventDefault();
      this.add(files);
    };
    document.addEventListener("dragover", this.onPageDragOver);
    document.addEventListener("drop", this.onPageDrop);
    document.addEventListener("paste", this.onPagePaste);
  }

  /** Uploads an earlier visit left unfinished, which choosing or dropping their files continues. */
  async listUnfinished() {
    const found = await findUnfinished(this.resume, this.api);
    // Files chosen while Datasette was asked are under way already.
    this.unfinished = found.filter((entry) => !this.uploads.some((u) => sameFile(u.file, entry)));
    this.drawUnfinished();
  }

  drawUnfinished() {
    const box = this.querySelector(".dfs3-unfinished");
    const list = box.querySelector("ul");
    list.replaceChildren();
    for (const entry of this.unfinished) {
      const item = document.createElement("li");
      const name = document.createElement("strong");
      name.textContent = entry.name;
      item.append(name, ` · ${formatBytes(entry.size)} · ${formatBytes(entry.inBucket)} already in the bucket `);
      const discard = document.createElement("button");
      discard.type = "button";
      discard.textContent = "Discard";
      discard.setAttribute("aria-label", `Discard the unfinished upload of ${entry.name}`);
      discard.addEventListener("click", () => this.discard(entry, discard));
      item.append(discard);
      list.append(item);
    }
    box.hidden = this.unfinished.length === 0;
  }

  /** Abort an unfinished upload the user will not continue, so its parts stop costing. */
  async discard(entry, button) {
    button.disabled = true;
    try {
      await discardUnfinished(this.resume, this.api, entry);
    } catch {
      button.disabled = false; // still there: the user can try again
      return;
    }
    this.unfinished = this.unfinished.filter((other) => other !== entry);
    this.drawUnfinished();
    this.querySelector(".dfs3-input").focus();
  }

  startTicker() {
    this.ticker = setInterval(() => {
      for (const upload of this.uploads) if (!upload.settled) this.scheduleUpdate(upload);
    }, 1000);
  }

  disconnectedCallback() {
    clearInterval(this.ticker);
    this.ticker = null;
    document.removeEventListener("dragover", this.onPageDragOver);
    document.removeEventListener("drop", this.onPageDrop);
    document.removeEventListener("paste", this.onPagePaste);
    this.wakeLock.hold(false);
  }

  get source() {
    return this.getAttribute("source") || "";
  }

  get uploads() {
    return this.scheduler.uploads;
  }

  render() {
    this.innerHTML = `
      <style>${STYLE}</style>
      <div class="dfs3-drop">
        <p>Drag files or folders here, or <label><input type="file" multiple class="dfs3-input"></label>
          <button type="button" class="dfs3-choose-folder">Choose folder</button></p>
        <p class="dfs3-limits"></p>
      </div>
      <div class="dfs3-unfinished" hidden>
        <p>Unfinished uploads from an earlier visit. Choose or drop these files again to continue them:</p>
        <ul></ul>
      </div>
      <div class="dfs3-total" hidden>
        <progress max="1" value="0"></progress>
        <div class="dfs3-detail dfs3-total-detail"></div>
        <button type="button" class="dfs3-pause-all">Pause all</button>
        <button type="button" class="dfs3-resume-all" hidden>Resume all</button>
        <button type="button" class="dfs3-cancel-all">Cancel all</button>
      </div>
      <ul class="dfs3-files"></ul>
      <div class="dfs3-summary" hidden></div>
      <div class="dfs3-status"></div>`;
    this.list = this.querySelector(".dfs3-files");
    // Names for what a screen reader finds: the chooser (its own "Choose Files"
    // button has none of its own) and the bars; the status region reads out
    // each file's outcome and waits.
    this.querySelector(".dfs3-input").setAttribute("aria-label", `Choose files to upload to ${this.source}`);
    this.querySelector(".dfs3-total progress").setAttribute("aria-label", "Total upload progress");
    this.showLimits();
    this.announcer = new Announcer(this.querySelector(".dfs3-status"));
    this.querySelector(".dfs3-input").addEventListener("change", (event) => {
      this.add([...event.target.files]);
      event.target.value = "";
    });
    // A folder's files, each with its path in the folder (webkitRelativePath).
    // Its chooser is made on demand and never joins the page: the page's one
    // file input stays the one that scripts and tests find.
    this.querySelector(".dfs3-choose-folder").addEventListener("click", () => {
      const folderInput = Object.assign(document.createElement("input"), { type: "file", webkitdirectory: true });
      folderInput.addEventListener("change", () => this.add([...folderInput.files]));
      folderInput.click();
    });
    this.querySelector(".dfs3-cancel-all").addEventListener("click", () => this.cancelAll());
    this.querySelector(".dfs3-pause-all").addEventListener("click", () => this.batch("pauseAll", ".dfs3-resume-all"));
    this.querySelector(".dfs3-resume-all").addEventListener("click", () => this.batch("resumeAll", ".dfs3-pause-all"));
    const drop = this.querySelector(".dfs3-drop");
    drop.addEventListener("dragover", (event) => {
      event.preventDefault();
      drop.classList.add("dfs3-over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("dfs3-over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("dfs3-over");
      filesFromDrop(event.dataTransfer).then((files) => this.add(files));
    });
  }

  /**
   * The source's limits under the drop text, read with the chooser; its accept
   * narrows the browser's file picker to the allowed types.
   */
  showLimits() {
    const input = this.querySelector(".dfs3-input");
    const types = acceptedTypes(this.getAttribute("accept"));
    if (types.length) input.accept = types.join(",");
    const limits = this.querySelector(".dfs3-limits");
    limits.textContent = limitsText(Number(this.getAttribute("max-file-size")), types);
    limits.hidden = !limits.textContent;
    limits.id = `dfs3-limits-${++limitsShown}`;
    input.setAttribute("aria-describedby", limits.id);
  }

  /** Queue files for upload (also callable by embedding pages). */
  add(files) {
    if (!files.length) return;
    if (this.unfinished.some((entry) => files.some((file) => sameFile(file, entry)))) {
      this.unfinished = this.unfinished.filter((entry) => !files.some((file) => sameFile(file, entry)));
      this.drawUnfinished();
    }
    this.querySelector(".dfs3-summary").hidden = true;
    this.querySelector(".dfs3-total").hidden = false;
    // Rows first: the scheduler starts uploads (and their "start" events) as it adds them.
    const rows = files.map((file) => this.renderRow(file));
    const added = this.scheduler.add(files);
    added.forEach((upload, i) => {
      this.views.set(upload, { row: rows[i], meter: new SpeedMeter(), dirty: false, said: "" });
      for (const { name, act } of ROW_BUTTONS) {
        rows[i].querySelector(`.dfs3-${name}`).addEventListener("click", () => this.act(upload, act));
      }
      upload.addEventListener("change", () => this.scheduleUpdate(upload));
      this.update(upload);
    });
    this.updateTotal();
  }

  /** Cancel every file not yet finished (also callable by embedding pages). */
  cancelAll() {
    this.scheduler.cancelAll();
  }

  /**
   * A row's button: pause, resume (or retry) or cancel its upload. The button
   * clicked hides, so focus moves on rather than falling to the page: to the
   * row's next shown button (Pause to Resume and back), or after a cancel to
   * the next file's buttons, or else to the file chooser.
   */
  act(upload, action) {
    if (action !== "cancel") this.querySelector(".dfs3-summary").hidden = true;
    const { row } = this.views.get(upload);
    const focused = row.contains(document.activeElement) ? document.activeElement : null;
    this.scheduler[action](upload);
    this.update(upload);
    this.updateTotal();
    if (!focused?.hidden) return;
    const shown = ".dfs3-file-head button:not([hidden])";
    let next = row.querySelector(shown);
    for (let other = row.nextElementSibling; !next && other; other = other.nextElementSibling) next = other.querySelector(shown);
    (next || this.querySelector(".dfs3-input")).focus();
  }

  /** Pause all or resume all, focus going to the other button. */
  batch(action, focusNext) {
    this.querySelector(".dfs3-summary").hidden = true;
    const focused = document.activeElement;
    this.scheduler[action]();
    for (const upload of this.uploads) this.update(upload);
    this.updateTotal();
    const next = this.querySelector(focusNext);
    if (focused?.hidden && !next.hidden) next.focus();
  }

  settled(upload) {
    if (upload.status === "done") this.emit("files-s3-upload-done", { file: upload.result });
    if (upload.status === "error") this.emit("files-s3-upload-error", { name: upload.file.name, error: upload.error });
    if (upload.status === "cancelled") this.emit("files-s3-upload-cancelled", { name: upload.file.name });
    // Drawn with the next progress step: hundreds of small files settle a second.
    this.scheduleUpdate(upload);
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
  }

  renderRow(file) {
    const row = document.createElement("li");
    row.className = "dfs3-file";
    row.innerHTML = `
      <div class="dfs3-file-head">
        <span class="dfs3-name"></span>
        <span class="dfs3-state"></span>
      </div>
      <progress max="1" value="0"></progress>
      <div class="dfs3-detail"></div>
      <div class="dfs3-error" hidden></div>`;
    row.querySelector(".dfs3-name").textContent = shownName(file);
    row.querySelector("progress").setAttribute("aria-label", `Upload progress of ${shownName(file)}`);
    const head = row.querySelector(".dfs3-file-head");
    for (const { name, label } of ROW_BUTTONS) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = `dfs3-${name}`;
      button.textContent = label;
      button.setAttribute("aria-label", `${label} ${shownName(file)}`);
      head.append(button);
    }
    this.list.append(row);
    return row;
  }

  // Progress events arrive many times a second. Drawing at every frame was
  // most of the page's work with many small files in flight (Chromium's
  // layout and paint, benchmarks/link.py), so rows are drawn at most every
  // DRAW_EVERY_MS, in an animation frame: still a moving bar to the eye.
  scheduleUpdate(upload) {
    const view = this.views.get(upload);
    if (!view) return; // still being added: add() draws it
    view.dirty = true;
    if (this.drawScheduled) return;
    this.drawScheduled = true;
    const wait = Math.max(0, (this.lastDrawn ?? -Infinity) + DRAW_EVERY_MS - performance.now());
    setTimeout(() => requestAnimationFrame(() => this.drawDirty()), wait);
  }

  drawDirty() {
    this.drawScheduled = false;
    this.lastDrawn = performance.now();
    for (const [u, v] of this.views) if (v.dirty) this.update(u);
    this.updateTotal();
  }

  update(upload) {
    const view = this.views.get(upload);
    view.dirty = false;
    const { row, meter } = view;
    const { file, status } = upload;
    row.dataset.status = status;
    meter.add(upload.sentHere);
    const fraction = file.size ? upload.loaded / file.size : status === "done" ? 1 : 0;
    setProgress(row.querySelector("progress"), fraction, `${formatBytes(upload.loaded)} of ${formatBytes(file.size)}`);
    row.querySelector(".dfs3-state").textContent = upload.queuedOnly ? LABELS.pending : LABELS[status];
    for (const { name, shown } of ROW_BUTTONS) row.querySelector(`.dfs3-${name}`).hidden = !shown(upload);
    const parts = [`${formatBytes(upload.loaded)} of ${formatBytes(file.size)}`, `${Math.floor(fraction * 100)}%`];
    if (status === "uploading") {
      // No speed while a retry waits or nothing moves: an old speed there is a lie.
      const rate = upload.waiting ? 0 : meter.rate();
      if (rate > 0) parts.push(`${formatBytes(rate)}/s`, `${formatDuration((file.size - upload.loaded) / rate)} left`);
      if (upload.resumedBytes) parts.push(`resumed from ${formatBytes(upload.resumedBytes)}`);
      if (upload.waiting) parts.push(waitingText(upload.waiting));
      else if (upload.retryCount) parts.push(`${upload.retryCount} retr${upload.retryCount === 1 ? "y" : "ies"}`);
    }
    if (status === "cancelled" || status === "error") parts[0] += " sent";
    row.querySelector(".dfs3-detail").textContent = parts.join(" · ");
    const sentence = announcement(upload);
    if (sentence !== view.said) {
      view.said = sentence;
      if (sentence) this.announcer.say(sentence);
    }
    if (status === "done" && upload.result) {
      row.dataset.fileId = upload.result.id;
      const name = row.querySelector(".dfs3-name");
      if (!name.querySelector("a")) {
        const link = document.createElement("a");
        link.href = upload.result.url;
        link.textContent = shownName(file);
        name.replaceChildren(link);
      }
    }
    const errorBox = row.querySelector(".dfs3-error");
    errorBox.hidden = status !== "error";
    if (status === "error" && upload.error) {
      errorBox.textContent = upload.error.message;
      if (upload.error.help) {
        const help = document.createElement("div");
        help.append("To fix it, allow this page's origin " + location.origin + " on the bucket by running:");
        const code = document.createElement("code");
        code.textContent = upload.error.help;
        help.append(code);
        errorBox.append(help);
      }
    }
  }

  /** The total line: see totals() in upload-scheduler.js for what it counts. */
  updateTotal() {
    const total = this.scheduler.totals();
    this.meter.add(total.sent);
    const box = this.querySelector(".dfs3-total");
    setProgress(box.querySelector("progress"), total.fraction, `${formatBytes(total.loaded)} of ${formatBytes(total.size)}`);
    const parts = total.files
      ? [`Total: ${formatBytes(total.loaded)} of ${formatBytes(total.size)}`, `${Math.floor(total.fraction * 100)}%`]
      : ["Total: nothing left to upload"];
    const rate = this.meter.rate();
    if (total.busy && rate > 0) parts.push(`${formatBytes(rate)}/s`, `${formatDuration((total.size - total.loaded) / rate)} left`);
    const dropped = [total.failed && `${total.failed} failed`, total.cancelled && `${total.cancelled} cancelled`];
    if (total.failed || total.cancelled) parts.push(dropped.filter(Boolean).join(", "));
    box.querySelector(".dfs3-total-detail").textContent = parts.join(" · ");
    box.querySelector(".dfs3-cancel-all").hidden = !total.busy;
    const running = (u) => u.status === "pending" || u.status === "uploading";
    box.querySelector(".dfs3-pause-all").hidden = !this.uploads.some(running);
    box.querySelector(".dfs3-resume-all").hidden = !this.uploads.some((u) => u.status === "paused");
    this.wakeLock.hold(this.uploads.some(running));
  }

  /**
   * The batch finished: a summary line links to the uploaded files. Past
   * FOLD_AFTER of them, their rows fold into it and the links go behind a
   * "Show", so 50 files do not leave 50 rows and 50 links. Failed rows stay,
   * with their Retry. Clear removes the summary and the rows that need nothing more.
   */
  summarize() {
    const done = this.uploads.filter((u) => u.status === "done");
    const failed = this.uploads.filter((u) => u.status === "error").length;
    const cancelled = this.uploads.filter((u) => u.status === "cancelled").length;
    const summary = this.querySelector(".dfs3-summary");
    summary.replaceChildren();
    const line = document.createElement("p");
    line.textContent = `${done.length} uploaded` + (failed ? `, ${failed} failed` : "") + (cancelled ? `, ${cancelled} cancelled` : "");
    summary.append(line);
    if (done.length) {
      const list = document.createElement("ul");
      const fold = done.length > FOLD_AFTER;
      for (const upload of done) {
        this.views.get(upload).row.hidden = fold;
        const item = document.createElement("li");
        const link = document.createElement("a");
        link.href = upload.result.url;
        link.textContent = shownName(upload.file);
        item.append(link);
        list.append(item);
      }
      if (fold) {
        const more = document.createElement("details");
        const label = document.createElement("summary");
        label.textContent = `Show the ${done.length} uploaded files`;
        more.append(label, list);
        summary.append(more);
      } else {
        summary.append(list);
      }
    }
    const clear = document.createElement("button");
    clear.type = "button";
    clear.className = "dfs3-clear";
    clear.textContent = "Clear";
    clear.setAttribute("aria-label", "Clear the finished uploads from this list");
    clear.addEventListener("click", () => this.clearFinished());
    summary.append(clear);
    summary.hidden = false;
    this.updateTotal();
    this.emit("files-s3-uploads-finished", {
      results: this.uploads.map((u) => ({ name: u.file.name, status: u.status, file: u.result, error: u.error })),
    });
  }

  /** Remove the summary and the uploaded and cancelled rows; failed ones stay to be retried. */
  clearFinished() {
    const cleared = this.uploads.filter((u) => u.status === "done" || u.status === "cancelled");
    for (const upload of cleared) {
      this.views.get(upload).row.remove();
      this.views.delete(upload);
    }
    this.scheduler.forget(cleared);
    this.querySelector(".dfs3-summary").hidden = true;
    this.querySelector(".dfs3-total").hidden = this.uploads.length === 0;
    this.updateTotal();
    this.querySelector(".dfs3-input").focus();
  }
}

// Ids for each element's limits line, unique on the page.
let limitsShown = 0;

/** A bar's value, and the words a screen reader reads for it: "24%, 10 MB of 42 MB". */
function setProgress(bar, fraction, amount) {
  bar.value = fraction;
  bar.setAttribute("aria-valuetext", `${Math.floor(fraction * 100)}%, ${amount}`);
}

/** A file's name as its row shows it: with its folders when it came in a folder ("photos/a.jpg"). */
function shownName(file) {
  return relativePath(file) || file.name;
}

/** A text field or editable region: a paste there is its own. */
function takesPastes(target) {
  return target instanceof Element && Boolean(target.closest("input, textarea, [contenteditable]:not([contenteditable='false'])"));
}

if (!customElements.get("datasette-files-s3-upload")) {
  customElements.define("datasette-files-s3-upload", DatasetteFilesS3Upload);
}
