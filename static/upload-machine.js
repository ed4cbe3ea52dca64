// What to upload: one `FileUpload` per file walks pending -> uploading ->
// done | error | cancelled, or to paused and back to pending (a pause, or a
// retry of a failed file, continues where it stopped: a multipart upload asks
// S3 which parts it holds), choosing the direct POST or the multipart flow,
// remembering multipart tokens for resume, and deciding which parts are left.
// Which file starts when is upload-scheduler.js; sending, retrying and reading
// errors is upload-queue.js; drawing is the element.

import { relativePath } from "./dropped-folders.js";
import { BatchedEndpoint } from "./batch-requests.js";
import { sha256Base64 } from "./checksums.js";
import { UploadError, cancelledError, postJSON, retryReason, sendToBucket, withRetries } from "./upload-queue.js";

const SIGN_BATCH = 20;
// Re-sign a part URL this long before it expires.
const URL_MARGIN_MS = 60_000;

/** The endpoints of one Datasette source. */
export class DatasetteApi {
  constructor(baseUrl, source) {
    const base = (baseUrl || "/").replace(/\/?$/, "/");
    const slug = encodeURIComponent(source);
    this.direct = `${base}-/files/upload/${slug}/-/`;
    this.bucketUrl = `${base}-/files-s3/upload/${slug}/-/bucket`;
    this.multipart = `${base}-/files-s3/upload/${slug}/-/multipart/`;
    // Small files' prepares and completes: several waiting go in one request.
    const uploader = `${base}-/files-s3/upload/${slug}/-/`;
    this.prepares = new BatchedEndpoint({
      single: (body, signal) => postJSON(this.direct + "prepare", body, signal),
      batchUrl: uploader + "prepare-batch",
    });
    this.completes = new BatchedEndpoint({
      single: (body, signal) => postJSON(this.direct + "complete", body, signal),
      batchUrl: uploader + "complete-batch",
    });
  }
  /** A multipart step; create and complete may answer with the file already registered. */
  call(step, body, signal) {
    const request = postJSON(this.multipart + step, body, signal);
    return step === "create" || step === "complete" ? alreadyCompletedIsAnswer(request) : request;
  }
  prepare(body, signal) {
    return this.prepares.call(body, signal);
  }
  complete(body, signal) {
    return alreadyCompletedIsAnswer(this.completes.call(body, signal));
  }
  /** Resolves when Datasette finds the bucket there and open to it; rejects with its answer if not. */
  checkBucket(signal) {
    return postJSON(this.bucketUrl, {}, signal);
  }
}

/**
 * A retried complete whose first attempt registered the file, or a resume of
 * such an upload, is refused with 409 and that file: its answer was lost on
 * the way, and the upload is done. Resolves with {ok, file, already_completed}.
 */
async function alreadyCompletedIsAnswer(request) {
  try {
    return await request;
  } catch (error) {
    if (error instanceof UploadError && error.status === 409 && error.body?.file) {
      return { ok: true, file: error.body.file, already_completed: true };
    }
    throw error;
  }
}

/**
 * Which multipart token belongs to which local file (name, size, last
 * modified), and until when the upload can be continued. Each entry's value is
 * JSON {token, expiresAt} (ms since the epoch); a bare token is an entry
 * written before expiresAt was kept.
 */
export class ResumeStore {
  constructor(source, storage = globalThis.localStorage) {
    this.prefix = `datasette-files-s3:${source}:`;
    this.storage = storage;
  }
  key(file) {
    return `${this.prefix}${file.name}:${file.size}:${file.lastModified}`;
  }
  get(file) {
    try {
      return readEntry(this.storage?.getItem(this.key(file))).token;
    } catch {
      return null;
    }
  }
  /** @param {number} [expiresAt] seconds since the epoch, as create answers it */
  set(file, token, expiresAt = null) {
    try {
      this.storage?.setItem(this.key(file), JSON.stringify({ token, expiresAt: expiresAt && expiresAt * 1000 }));
    } catch {
      // Private mode or a full quota: resume is lost, the upload still works.
    }
  }
  forget(file) {
    try {
      this.storage?.removeItem(this.key(file));
    } catch {
      // as above
    }
  }
  /** Every remembered upload of this source: [{name, size, lastModified, token, expiresAt}]. */
  entries() {
    const found = [];
    try {
      for (let i = 0; i < (this.storage?.length || 0); i++) {
        const key = this.storage.key(i);
        if (!key?.startsWith(this.prefix)) continue;
        // name:size:lastModified, and a name may hold colons: read from the end.
        const match = /^(.*):(\d+):(\d+)$/s.exec(key.slice(this.prefix.length));
        if (!match) continue;
        const [, name, size, lastModified] = match;
        const { token, expiresAt } = readEntry(this.storage.getItem(key));
        if (token) found.push({ name, size: Number(size), lastModified: Number(lastModified), token, expiresAt });
      }
    } catch {
      // as above: nothing to list
    }
    return found;
  }
}

/** A ResumeStore value as {token, expiresAt}; both null when there is none. */
function readEntry(value) {
  if (!value) return { token: null, expiresAt: null };
  if (!value.startsWith("{")) return { token: value, expiresAt: null };
  try {
    const { token = null, expiresAt = null } = JSON.parse(value);
    return { token, expiresAt };
  } catch {
    return { token: null, expiresAt: null };
  }
}

/** The promise's value, or null as soon as the signal aborts (the promise runs on). */
function untilAborted(promise, signal) {
  if (signal.aborted) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(null);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(signal.aborted ? null : value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** The exact length of part `n` (1-based) in a plan. */
export function partLength(size, partSize, n) {
  const count = Math.max(1, Math.ceil(size / partSize));
  return n < count ? partSize : size - partSize * (count - 1);
}

/** Part numbers still to send: those S3 does not hold at their planned size. */
export function remainingParts(size, partSize, partCount, uploaded) {
  const have = new Set(uploaded.filter((p) => p.size === partLength(size, partSize, p.part_number)).map((p) => p.part_number));
  const left = [];
  for (let n = 1; n <= partCount; n++) if (!have.has(n)) left.push(n);
  return left;
}

/** One file's upload. Listen for "change" to redraw. */
export class FileUpload extends EventTarget {
  /**
   * @param {File} file
   * @param {{api: DatasetteApi, queue: import("./upload-queue.js").RequestQueue,
   *          resume: ResumeStore, threshold: number, retries?: number, stallTimeout?: number,
   *          corsHelp: (origin: string) => string, checksums?: boolean}} options
   *   checksums: send SHA-256s the store checks (the file's, or each part's)
   *   stallTimeout: milliseconds a request to the bucket may go without progress (sendToBucket)
   */
  constructor(file, { api, queue, resume, threshold, retries = 6, stallTimeout, corsHelp, checksums = true }) {
    super();
    Object.assign(this, { file, api, queue, resume, threshold, retries, stallTimeout, corsHelp, checksums });
    this.status = "pending";
    this.error = null;
    this.result = null;
    this.sentBytes = 0; // confirmed in the bucket
    this.inFlight = new Map(); // part number -> bytes sent so far
    this.resumedBytes = 0;
    this.sentEarlier = 0; // sent in this page by runs before a pause or a failure
    this.retryCount = 0;
    this.queued = 0; // requests to the bucket waiting for a free slot in the shared queue
    // While a retry waits, what for: {reason: "Connection lost", until: ms since
    // the epoch} for a timed wait (the row counts down to it), or {reason:
    // "Offline: waiting for the network to come back", until: null} while the browser is offline.
    this.waiting = null;
    // One per run: a pause or cancel aborts the run's requests.
    this.controller = new AbortController();
    this.token = null;
  }

  get multipart() {
    return this.file.size > this.threshold;
  }

  /** Bytes sent so far; once the upload failed or was cancelled, what it had sent by then. */
  get loaded() {
    let bytes = this.sentBytes;
    for (const b of this.inFlight.values()) bytes += b;
    return Math.min(bytes, this.file.size);
  }

  /** Bytes sent in this page: parts an earlier visit left in the bucket do not count. */
  get sentHere() {
    return this.sentEarlier + Math.max(0, this.loaded - this.resumedBytes);
  }

  /** Started, but every request it has is waiting for a free connection slot. */
  get queuedOnly() {
    return this.status === "uploading" && this.queued > 0 && this.inFlight.size === 0 && this.loaded === this.resumedBytes;
  }

  get settled() {
    return this.status === "done" || this.status === "error" || this.status === "cancelled";
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }

  setStatus(status) {
    this.status = status;
    this.changed();
  }

  /**
   * Upload the file, or continue it after a pause or a failure; never rejects
   * (the outcome is in status / error / result). Resolves when this run ends:
   * done, failed, cancelled or paused.
   */
  async start() {
    if (this.status !== "pending") return;
    const controller = (this.controller = new AbortController());
    // What earlier runs sent stays counted as sent here (for the speed); what
    // they had in flight is gone and is sent again.
    this.sentEarlier = this.sentHere;
    this.inFlight.clear();
    this.resumedBytes = this.loaded;
    this.error = null;
    this.waiting = null;
    this.setStatus("uploading");
    try {
      const result = this.multipart ? await this.uploadMultipart() : await this.uploadDirect();
      if (controller !== this.controller) return; // paused and started again meanwhile: that run decides
      this.result = result;
      this.resume.forget(this.file);
      this.inFlight.clear();
      this.sentBytes = this.file.size;
      this.setStatus("done");
    } catch (error) {
      if (controller !== this.controller || this.status === "paused") return;
      if (controller.signal.aborted || error.kind === "cancelled") {
        this.setStatus("cancelled");
        return;
      }
      this.error = this.describe(error);
      this.waiting = null;
      this.setStatus("error");
    }
  }

  /** Waiting for the user to resume it (paused), or to retry it (failed, not refused as a duplicate). */
  get canResume() {
    return this.status === "paused" || (this.status === "error" && this.error?.kind !== "duplicate");
  }

  /**
   * Stop sending, keeping what is in the bucket: a multipart upload is not
   * aborted and stays remembered for resume. No request goes out while paused.
   */
  pause() {
    if (this.status !== "pending" && this.status !== "uploading") return;
    this.setStatus("paused");
    this.inFlight.clear();
    this.controller.abort();
  }

  /**
   * Continue a paused or failed upload from where it stopped: status goes back
   * to pending, and the scheduler starts it again. Returns whether it will.
   * (Not `resume`: that is the upload's ResumeStore.)
   */
  proceed() {
    if (!this.canResume) return false;
    this.retryCount = 0;
    this.setStatus("pending");
    return true;
  }

  /** Fail before starting, for a reason found before a request (a duplicate). */
  refuse(error) {
    if (this.status !== "pending") return;
    this.error = this.describe(error);
    this.setStatus("error");
  }

  /**
   * Stop now; a multipart upload is aborted in S3 so no parts are left behind.
   * Resolves true when no run of the file is under way (pending or paused), so
   * start() will never settle it.
   */
  async cancel() {
    if (this.settled) return false;
    const wasPending = this.status === "pending" || this.status === "paused";
    // Settle first: the aborted requests' last progress (0) is then ignored,
    // and the row keeps what had been sent when the user cancelled.
    this.setStatus("cancelled");
    this.controller.abort();
    this.resume.forget(this.file);
    if (this.token) await this.abortQuietly(this.token);
    return wasPending;
  }

  /** Abort a multipart upload in S3, trying a few times; failing is left to cleanup. */
  async abortQuietly(token) {
    try {
      await withRetries(() => this.api.call("abort", { upload_token: token }), { retries: 3 });
    } catch {
      // Cleanup finds what is left; the user asked to stop, so no error here.
    }
  }

  /** The error in plain words, with the fix when it is a bucket configuration problem. */
  describe(error) {
    const message = error.message || String(error);
    if (error.kind === "cors" || error.kind === "etag") {
      return { message, kind: error.kind, help: this.corsHelp(location.origin) };
    }
    return { message, kind: error.kind || "server" };
  }

  /**
   * withRetries, counting the retries and saying in the row what each waits
   * for until it is sent. Parts retry on their own, so a row shows the latest
   * wait, and only that wait's own retry clears it.
   */
  withRetries(attempt, signal = this.controller.signal) {
    let waiting = null;
    return withRetries(
      (n) => {
        if (waiting && this.waiting === waiting) {
          this.waiting = null;
          this.changed();
        }
        return attempt(n);
      },
      {
        retries: this.retries,
        signal,
        onRetry: (error, n, delay) => {
          this.retryCount++;
          waiting = this.waiting = { reason: retryReason(error), until: Date.now() + delay };
          this.changed();
        },
        onOffline: () => {
          waiting = this.waiting = { reason: "Offline: waiting for the network to come back", until: null };
          this.changed();
        },
      },
    );
  }

  describeBody() {
    return {
      filename: this.file.name,
      content_type: this.file.type || "application/octet-stream",
      size: this.file.size,
      // Kept in the file's metadata, for a file of a dropped or chosen folder.
      ...(relativePath(this.file) && { relative_path: relativePath(this.file) }),
    };
  }

  /**
   * One request to the bucket when the shared queue has a slot; `makeRequest`
   * runs then, so a part URL is signed no earlier than it is needed. A request
   * that gets no answer at all asks Datasette whether the bucket is there.
   */
  toBucket(makeRequest, signal) {
    const checkBucket = () => this.api.checkBucket(signal);
    const stallTimeout = this.stallTimeout;
    this.queued++;
    let started = false;
    const begin = () => {
      if (started) return;
      started = true;
      this.queued--;
      this.changed();
    };
    // Smaller files go first: a small file behind a big one's parts would
    // otherwise wait for all of them, its row stuck at "Uploading · 0%".
    return this.queue
      .run(
        async () => {
          begin();
          return sendToBucket({ ...(await makeRequest()), signal, checkBucket, stallTimeout });
        },
        signal,
        this.file.size,
      )
      .finally(begin);
  }

  // --- one request: a presigned POST, or a PUT --------------------------

  async uploadDirect() {
    const signal = this.controller.signal;
    // A retry after the bytes reached the bucket completes them instead of sending
    // them again: a complete that registered the file but whose answer never came
    // back would otherwise leave the file registered twice.
    if (this.unconfirmed) {
      const file = await this.completeUnconfirmed(signal);
      if (file) return file;
    }
    this.sentBytes = 0; // one request: a run sends it all again
    const body = this.describeBody();
    // Signed into the policy or URL: the store refuses any other bytes, and
    // complete records the hash once the store has reported it.
    if (this.checksums) body.sha256 = await sha256Base64(this.file, { signal });
    body.accepts_put = true;
    const prepared = await this.withRetries(() => this.api.prepare(body, signal));
    this.token = null; // direct tokens have nothing to abort
    const completion = { upload_token: prepared.upload_token };
    try {
      await this.sendWhole(prepared, signal);
    } catch (error) {
      // R2 and B2 answer POST Object with 501: the same key's presigned PUT
      // goes through, and complete tells Datasette to sign PUTs from now on.
      if (error.status !== 501 || !prepared.put_fallback) throw error;
      await this.sendWhole(prepared.put_fallback, signal);
      completion.post_refused = true;
    }
    this.inFlight.delete(1);
    this.sentBytes = this.file.size;
    this.unconfirmed = completion;
    const completed = await this.withRetries(() => this.api.complete(completion, signal));
    this.unconfirmed = null;
    return completed.file;
  }

  /**
   * Complete what an earlier run sent. Null when Datasette refuses that upload
   * (its token expired, the object is not what was signed): send it afresh.
   */
  async completeUnconfirmed(signal) {
    try {
      const completed = await this.withRetries(() => this.api.complete(this.unconfirmed, signal));
      this.unconfirmed = null;
      return completed.file;
    } catch (error) {
      if (!(error instanceof UploadError) || !(error.status >= 400 && error.status < 500)) throw error;
      this.unconfirmed = null;
      return null;
    }
  }

  /** The whole file in one request: a form POST with the signed fields, or a PUT of the bytes. */
  sendWhole(plan, signal) {
    return this.withRetries(() =>
      this.toBucket(() => {
        let body = this.file;
        if (plan.upload_method !== "PUT") {
          body = new FormData();
          for (const [name, value] of Object.entries(plan.upload_fields || {})) body.append(name, value);
          body.append("file", this.file);
        }
        return {
          method: plan.upload_method || "POST",
          url: plan.upload_url,
          body,
          headers: plan.upload_headers || {},
          onProgress: (bytes) => this.progress(1, bytes),
        };
      }, signal),
    );
  }

  // --- S3 multipart --------------------------------------------------------

  async uploadMultipart() {
    const signal = this.controller.signal;
    const body = this.describeBody();
    if (this.checksums) body.checksums = true;
    // This page's own token first: a retry continues it even where localStorage is off.
    const remembered = this.token || this.resume.get(this.file);
    if (remembered) body.resume_token = remembered;
    // Create itself is not cut off by cancel: S3 may have started the upload
    // already, and only create's answer holds the token that can abort it.
    // The upload still ends "cancelled" at once; the abort follows the answer.
    const creating = this.withRetries(() => this.api.call("create", body));
    const created = await untilAborted(creating, signal);
    if (!created) {
      creating
        .then(({ upload_token: token, expires_at: expiresAt }) => {
          if (!token) return;
          if (this.status !== "paused") return this.abortQuietly(token);
          // Paused: the upload S3 started is kept for the resume, like any other.
          this.token = token;
          this.resume.set(this.file, token, expiresAt);
        })
        .catch(() => {});
      throw cancelledError();
    }
    // The remembered upload was completed, its answer lost: that file is this one.
    if (created.already_completed) return created.file;
    this.token = created.upload_token;
    this.resume.set(this.file, this.token, created.expires_at);
    this.partSize = created.part_size;
    this.partCount = created.part_count;
    // A resumed upload keeps the choice it was created with.
    this.partChecksums = created.checksums ? new Map() : null;
    this.urls = new Map();
    const left = remainingParts(this.file.size, this.partSize, this.partCount, created.parts);
    this.sentBytes = 0;
    for (let n = 1; n <= this.partCount; n++) {
      if (!left.includes(n)) this.sentBytes += partLength(this.file.size, this.partSize, n);
    }
    this.resumedBytes = this.sentBytes;
    this.changed();
    // A failed part stops the others: no point sending more of a doomed file.
    const partsController = new AbortController();
    const stop = () => partsController.abort();
    signal.addEventListener("abort", stop, { once: true });
    try {
      await Promise.all(
        left.map((n) =>
          this.sendPart(n, left, partsController.signal).catch((error) => {
            partsController.abort();
            throw error;
          }),
        ),
      );
    } finally {
      signal.removeEventListener("abort", stop);
    }
    const completion = { upload_token: this.token };
    if (this.partChecksums) completion.checksums = await this.everyPartChecksum(signal);
    const completed = await this.withRetries(() => this.api.call("complete", completion, signal));
    return completed.file;
  }

  /**
   * {"n": base64 SHA-256} for every part. Parts sent before a resume are
   * hashed again from this file: complete then checks that the bucket's parts
   * are this file's, not those of whatever file was picked last time.
   */
  async everyPartChecksum(signal) {
    const all = {};
    for (let n = 1; n <= this.partCount; n++) {
      if (!this.partChecksums.has(n)) this.partChecksums.set(n, await sha256Base64(this.partBlob(n), { signal }));
      all[n] = this.partChecksums.get(n);
    }
    return all;
  }

  partBlob(n) {
    const start = (n - 1) * this.partSize;
    return this.file.slice(start, start + partLength(this.file.size, this.partSize, n));
  }

  /**
   * A fresh-enough URL for part n (and the headers it signs), signing it with
   * the next parts in one batch; with checksums, one part at a time, as each
   * part's SHA-256 is known only once it has been hashed.
   */
  async partUrl(n, left, signal) {
    const cached = this.urls.get(n);
    if (cached && cached.expires - URL_MARGIN_MS > Date.now()) return cached;
    const body = { upload_token: this.token };
    if (this.partChecksums) {
      body.part_numbers = [n];
      body.checksums = { [n]: this.partChecksums.get(n) };
    } else {
      const start = left.indexOf(n);
      body.part_numbers = left.slice(start, start + SIGN_BATCH);
    }
    const signed = await this.withRetries(() => this.api.call("sign", body, signal));
    const expires = Date.now() + signed.expires_in * 1000;
    for (const [number, url] of Object.entries(signed.urls)) {
      this.urls.set(Number(number), { url, expires, headers: signed.headers?.[number] || {} });
    }
    return this.urls.get(n);
  }

  async sendPart(n, left, signal) {
    const blob = this.partBlob(n);
    await this.withRetries(async () => {
      let response;
      try {
        response = await this.toBucket(
          async () => {
            // Hashed once the part's turn to send has come: hashing reads the
            // part into memory, so hashing every part up front held the whole file.
            if (this.partChecksums && !this.partChecksums.has(n)) {
              this.partChecksums.set(n, await sha256Base64(blob, { signal }));
            }
            const { url, headers } = await this.partUrl(n, left, signal);
            return {
              method: "PUT",
              url,
              headers,
              body: blob,
              onProgress: (bytes) => this.progress(n, bytes),
              readHeaders: ["ETag"],
              resignable: true,
            };
          },
          signal,
        );
      } catch (error) {
        if (error.status === 403) this.urls.delete(n); // an expired URL is retried signed again
        throw error;
      }
      if (!response.headers.ETag) {
        throw new UploadError(
          "The bucket accepted the part but did not let this page read its ETag header. " +
            "The bucket's CORS rule must expose ETag (ExposeHeaders: ETag).",
          { kind: "etag" },
        );
      }
    }, signal);
    this.inFlight.delete(n);
    this.sentBytes += blob.size;
    this.changed();
  }

  progress(n, bytes) {
    // A failed, cancelled or paused upload keeps what it had sent (an aborted request reports 0).
    if (this.status !== "uploading") return;
    this.inFlight.set(n, bytes);
    this.changed();
  }
}
