// Which file starts next, and what the total means. Files start in the order
// they were chosen, at most `parallel` at once; each file that settles (done,
// failed or cancelled) or is paused lets the next one start, and one resumed
// or retried waits its turn again. Nothing is drawn here: the
// element listens for "start", "settled" and "finished" events.

import { UploadError } from "./upload-queue.js";

// A small file spends its time on round trips (prepare, the POST, complete),
// not on bytes: with only `parallel` of them in flight a link sits idle
// (benchmarks/link.py: 200 files of 256 KiB at 100 Mbit/s, 40 ms RTT). While
// every file in flight is small, up to `smallParallel` (default
// SMALL_FILES_PARALLEL) run at once; the browser's own 6 connections per host
// still bound the requests, and the more files wait on Datasette, the larger
// the batches their prepares and completes go in (batch-requests.js). 32
// went 1.25 times as fast as 12 in the same run (docs/benchmarks.md).
export const SMALL_FILE_BYTES = 1024 * 1024;
export const SMALL_FILES_PARALLEL = 32;

/** The same file chosen again: name, size and last modified (what resume keys on). */
export function sameFile(a, b) {
  return a.name === b.name && a.size === b.size && a.lastModified === b.lastModified;
}

/**
 * The total: every file, with one that failed or was cancelled counted as what
 * it had sent, on both sides. So the bar never goes back when a file drops out
 * (cancelling a big file at 16% used to drop the bar to the small files'
 * 4%), and two files uploaded and two refused at once read 100%. `sent` counts
 * only bytes sent in this page (not parts an earlier visit left in the bucket),
 * for the speed.
 * @param {import("./upload-machine.js").FileUpload[]} uploads
 */
export function totals(uploads) {
  const dropped = (u) => u.status === "error" || u.status === "cancelled";
  const meant = uploads.filter((u) => !dropped(u));
  const loaded = uploads.reduce((sum, u) => sum + u.loaded, 0);
  const size = uploads.reduce((sum, u) => sum + (dropped(u) ? u.loaded : u.file.size), 0);
  const allDone = meant.length > 0 && meant.every((u) => u.status === "done");
  return {
    loaded,
    size,
    // Zero-byte files have nothing to count: done is 100%.
    fraction: size ? loaded / size : allDone ? 1 : 0,
    sent: uploads.reduce((sum, u) => sum + u.sentHere, 0),
    busy: uploads.some((u) => !u.settled),
    files: meant.length,
    failed: uploads.filter((u) => u.status === "error").length,
    cancelled: uploads.filter((u) => u.status === "cancelled").length,
  };
}

/** Starts uploads as slots free up; events carry `detail.upload`. */
export class UploadScheduler extends EventTarget {
  /**
   * @param {{parallel?: number, smallParallel?: number, createUpload: (file: File) => import("./upload-machine.js").FileUpload}} options
   */
  constructor({ parallel = 3, smallParallel = SMALL_FILES_PARALLEL, createUpload }) {
    super();
    this.parallel = parallel;
    this.smallParallel = smallParallel;
    this.createUpload = createUpload;
    this.uploads = [];
  }

  /**
   * Queue files; returns their uploads, which start as slots allow. A file
   * already uploading (or queued) is refused at once: the two would share one
   * upload's place on the server and in the resume store, and fight over it.
   */
  add(files) {
    const added = files.map((file) => this.createUpload(file));
    for (const upload of added) {
      const same = this.uploads.some((other) => !other.settled && sameFile(other.file, upload.file));
      this.uploads.push(upload);
      if (!same) continue;
      upload.refuse(new UploadError(`${upload.file.name} is already being uploaded: this copy was not added`, { kind: "duplicate" }));
      // After the caller has drawn its row (add returns first).
      queueMicrotask(() => this.settled(upload));
    }
    this.pump();
    return added;
  }

  /** Start waiting files, in order, while fewer than the limit are uploading. */
  pump() {
    const active = this.uploads.filter((u) => u.status === "uploading");
    for (const upload of this.uploads.filter((u) => u.status === "pending")) {
      if (active.length >= this.limit([...active, upload])) break;
      this.emit("start", upload);
      // start() marks the upload "uploading" before its first await.
      upload.start().then(() => this.ended(upload));
      active.push(upload);
    }
  }

  /** How many files may be in flight together with these: more when all are small. */
  limit(uploads) {
    const allSmall = uploads.every((u) => u.file.size <= SMALL_FILE_BYTES);
    return allSmall ? this.smallParallel : this.parallel;
  }

  /** Cancel one upload; one that had not started settles here, as start() never will. */
  cancel(upload) {
    upload.cancel().then((wasPending) => wasPending && this.settled(upload));
  }

  cancelAll() {
    for (const upload of this.uploads) this.cancel(upload);
  }

  /** Pause one upload (it keeps its parts in the bucket); its slot goes to the next file. */
  pause(upload) {
    upload.pause();
    this.pump();
  }

  pauseAll() {
    for (const upload of this.uploads) upload.pause();
    this.pump();
  }

  /** Continue a paused upload, or retry a failed one from where it stopped. */
  resume(upload) {
    if (upload.proceed()) this.pump();
  }

  resumeAll() {
    for (const upload of this.uploads) if (upload.status === "paused") upload.proceed();
    this.pump();
  }

  /** Drop settled uploads from the list (the page cleared them): they no longer count in totals(). */
  forget(settledUploads) {
    this.uploads = this.uploads.filter((u) => !(u.settled && settledUploads.includes(u)));
  }

  /** A run of an upload ended: settled, or paused (which waits for resume). */
  ended(upload) {
    if (upload.settled) this.settled(upload);
    else this.pump();
  }

  settled(upload) {
    this.emit("settled", upload);
    this.pump();
    if (this.uploads.every((u) => u.settled)) this.emit("finished", null);
  }

  totals() {
    return totals(this.uploads);
  }

  emit(name, upload) {
    this.dispatchEvent(new CustomEvent(name, { detail: { upload } }));
  }
}
