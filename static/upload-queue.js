// The network side of the uploader: send a request, limit how many run at once,
// retry with exponential backoff and jitter, report progress, read S3's XML
// errors, and tell a network drop from a CORS block. It knows nothing about
// files, parts or the page.

/** An upload failure with a message written for the person uploading. */
export class UploadError extends Error {
  /**
   * @param {string} message plain words, safe to show
   * @param {{kind?: string, retryable?: boolean, status?: number, body?: object}} options
   *   kind: "network" | "cors" | "etag" | "server" | "bucket" | "cancelled"
   *   body: Datasette's JSON answer, when there was one
   */
  constructor(message, { kind = "server", retryable = false, status = 0, body = null } = {}) {
    super(message);
    this.kind = kind;
    this.retryable = retryable;
    this.status = status;
    this.body = body;
  }
}

export const cancelledError = () => new UploadError("Cancelled", { kind: "cancelled" });

/** Full-jitter backoff: a random delay up to base * 2^attempt, capped. */
export function backoffDelay(attempt, base = 500, max = 15000, random = Math.random) {
  return Math.round(random() * Math.min(max, base * 2 ** attempt));
}

/** Wait `ms`, or less if the signal aborts (then reject with cancelled). */
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelledError());
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(timer);
      reject(cancelledError());
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Run `attempt(n)` until it succeeds, retrying errors marked retryable after a
 * backoff delay; `onRetry(error, n, delay)` is told about each retry.
 */
export async function withRetries(attempt, { retries = 6, base = 500, max = 15000, signal, onRetry } = {}) {
  for (let n = 0; ; n++) {
    if (signal?.aborted) throw cancelledError();
    try {
      return await attempt(n);
    } catch (error) {
      if (signal?.aborted) throw cancelledError();
      if (!(error instanceof UploadError) || !error.retryable || n >= retries) throw error;
      const delay = backoffDelay(n, base, max);
      onRetry?.(error, n + 1, delay);
      await sleep(delay, signal);
    }
  }
}

/** A concurrency limit: at most `limit` tasks run at once, the rest wait in order. */
export class RequestQueue {
  constructor(limit = 4) {
    this.limit = limit;
    this.running = 0;
    this.waiting = [];
  }

  /** Run `task()` when a slot is free; resolves or rejects with its result. */
  run(task, signal) {
    return new Promise((resolve, reject) => {
      const entry = { task, resolve, reject, signal };
      signal?.addEventListener(
        "abort",
        () => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) {
            this.waiting.splice(i, 1);
            reject(cancelledError());
          }
        },
        { once: true },
      );
      this.waiting.push(entry);
      this.next();
    });
  }

  next() {
    while (this.running < this.limit && this.waiting.length) {
      const { task, resolve, reject } = this.waiting.shift();
      this.running++;
      Promise.resolve()
        .then(task)
        .then(resolve, reject)
        .finally(() => {
          this.running--;
          this.next();
        });
    }
  }
}

/** Statuses worth retrying: throttling, timeouts and server-side failures. */
export function isRetryableStatus(status) {
  return status === 408 || status === 429 || status >= 500;
}

/** S3's error code from its XML error body ("" when absent). */
export function parseS3ErrorCode(text) {
  return /<Code>([^<]+)<\/Code>/.exec(text || "")?.[1] || "";
}

/** A bucket's non-2xx answer as an UploadError (403 is retried: the URL may have expired). */
export function bucketError(response) {
  const { status } = response;
  const code = parseS3ErrorCode(response.text);
  return new UploadError(`The bucket refused the upload (${status}${code ? " " + code : ""})`, {
    kind: "bucket",
    status,
    retryable: status === 403 || isRetryableStatus(status),
  });
}

// --- talking to Datasette ----------------------------------------------------

/**
 * POST JSON to a Datasette endpoint; resolves with the parsed answer, rejects
 * with an UploadError carrying the server's own error messages.
 */
export async function postJSON(url, body, signal) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch {
    if (signal?.aborted) throw cancelledError();
    throw new UploadError("Could not reach Datasette: the connection was lost", {
      kind: "network",
      retryable: true,
    });
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok || !data || data.ok === false) {
    const messages = data?.errors?.length ? data.errors.join("; ") : `Datasette answered ${response.status}`;
    throw new UploadError(messages, {
      status: response.status,
      retryable: isRetryableStatus(response.status),
      body: data,
    });
  }
  return data;
}

// --- talking to the bucket -------------------------------------------------

// Origins that have answered a cross-origin upload request in this page: a later
// failure without a response there is a network problem, not a CORS rule.
const reachedOrigins = new Set();

/**
 * Did the request fail because CORS blocked it, or because the network did?
 * Both look the same to a page (status 0). A no-cors GET to the same origin
 * tells them apart: it resolves when the server is reachable.
 */
export async function classifyNoResponse(url) {
  const origin = new URL(url, location.href).origin;
  const network = new UploadError(`The connection to ${origin} was lost`, { kind: "network", retryable: true });
  if (reachedOrigins.has(origin) || !navigator.onLine) return network;
  try {
    await fetch(origin + "/", { mode: "no-cors", cache: "no-store" });
  } catch {
    return network;
  }
  return new UploadError(`The browser blocked the upload to ${origin}: the bucket's CORS rule does not allow this page`, {
    kind: "cors",
  });
}

/**
 * Send one request to the bucket with XMLHttpRequest (fetch cannot report
 * upload progress). Resolves with {status, headers} (only the `readHeaders`
 * asked for: reading one the bucket does not expose logs a console error);
 * rejects with an UploadError.
 * @param {{method: string, url: string, body: any, headers?: object, signal?: AbortSignal,
 *          onProgress?: (bytes: number) => void, readHeaders?: string[]}} request
 */
export function sendToBucket({
  method,
  url,
  body,
  headers = {},
  signal,
  onProgress,
  readHeaders = [],
}) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelledError());
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    const onAbort = () => xhr.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    const finish = () => signal?.removeEventListener("abort", onAbort);
    xhr.upload.onprogress = (event) => onProgress?.(event.loaded);
    xhr.onload = () => {
      finish();
      reachedOrigins.add(new URL(url, location.href).origin);
      if (xhr.status < 200 || xhr.status >= 300) {
        reject(bucketError({ status: xhr.status, text: xhr.responseText }));
        return;
      }
      const read = Object.fromEntries(readHeaders.map((name) => [name, xhr.getResponseHeader(name)]));
      resolve({ status: xhr.status, headers: read });
    };
    xhr.onerror = xhr.ontimeout = () => {
      finish();
      onProgress?.(0);
      classifyNoResponse(url).then(reject);
    };
    xhr.onabort = () => {
      finish();
      onProgress?.(0);
      reject(cancelledError());
    };
    xhr.send(body);
  });
}
