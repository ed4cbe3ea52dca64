// Several small files' prepares (or completes) to Datasette in one request.
//
// A small file costs three round trips: prepare at Datasette, the POST to the
// bucket, complete at Datasette. On a link with real round-trip time the two
// at Datasette decided how many small files a second went up, and a browser
// opens only six connections to one host (docs/benchmarks.md, "On a real
// link"). So at most `inFlight` requests of one kind are out at once; a call
// that finds a free slot goes at once, to the single endpoint as before, and
// calls made while every slot is taken wait and then go together, as one
// request to the batch endpoint (datasette_files_s3/batch_views.py). Nothing
// waits for a timer: a few files go exactly as before, and the busier the
// uploader, the larger the batches. Each call still gets its own answer or its
// own error, exactly as the single endpoint would have given it, and retries
// on its own.

import { UploadError, cancelledError, datasetteAnswerCanHeal, parseRetryAfter, postJSON } from "./upload-queue.js";

// batch_views.MAX_BATCH_FILES
export const BATCH_MAX_FILES = 50;
// Per kind, prepare and complete: together Chromium's six connections to one host.
export const REQUESTS_IN_FLIGHT = 3;

/** One endpoint, called per file, whose calls are sent in batches when several wait. */
export class BatchedEndpoint {
  /**
   * @param {{single: (body: object, signal?: AbortSignal) => Promise<object>, batchUrl: string,
   *          maxFiles?: number, inFlight?: number}} options
   *   single: the one-file call; maxFiles 1 sends every call that way at once (no batching)
   */
  constructor({ single, batchUrl, maxFiles = BATCH_MAX_FILES, inFlight = REQUESTS_IN_FLIGHT }) {
    Object.assign(this, { single, batchUrl, maxFiles, inFlight });
    this.waiting = [];
    this.running = 0;
  }

  /** This file's answer, as the single endpoint gives it; rejects with its UploadError. */
  call(body, signal) {
    if (this.maxFiles <= 1) return this.single(body, signal);
    if (signal?.aborted) return Promise.reject(cancelledError());
    return new Promise((resolve, reject) => {
      const entry = { body, signal, resolve, reject };
      // Aborted while waiting: it leaves the queue. Aborted once sent: the batch
      // runs on for the others, and this call's answer is dropped.
      signal?.addEventListener(
        "abort",
        () => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(cancelledError());
        },
        { once: true },
      );
      this.waiting.push(entry);
      this.flush();
    });
  }

  /** Send what waits, in as many requests as there are free slots. */
  flush() {
    while (this.running < this.inFlight && this.waiting.length) {
      const entries = this.waiting.splice(0, this.maxFiles);
      this.running++;
      this.send(entries).finally(() => {
        this.running--;
        this.flush();
      });
    }
  }

  async send(entries) {
    if (entries.length === 1) {
      const [{ body, signal, resolve, reject }] = entries;
      return this.single(body, signal).then(resolve, reject);
    }
    let answers;
    try {
      const answer = await postJSON(this.batchUrl, { files: entries.map((e) => e.body) });
      answers = answer.files;
      if (!Array.isArray(answers) || answers.length !== entries.length) {
        throw new UploadError(`Datasette answered ${answers?.length ?? "no"} files for a batch of ${entries.length}`);
      }
    } catch (error) {
      // The batch itself failed (the network, Datasette): each file hears of it
      // and retries, or not, on its own.
      for (const entry of entries) entry.reject(error);
      return;
    }
    entries.forEach((entry, i) => {
      const answer = answers[i];
      if (answer?.ok) entry.resolve(answer);
      else entry.reject(fileError(answer));
    });
  }
}

/** One file's refusal in a batch, as postJSON would have rejected the single endpoint's answer. */
function fileError(answer) {
  const status = answer?.status || 0;
  const messages = answer?.errors?.length ? answer.errors.join("; ") : `Datasette answered ${status} for this file`;
  return new UploadError(messages, {
    status,
    retryable: datasetteAnswerCanHeal(status, answer),
    body: answer,
    retryAfter: parseRetryAfter(answer?.retry_after == null ? null : String(answer.retry_after)),
  });
}
