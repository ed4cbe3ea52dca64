// The network side of the uploader: send a request, limit how many run at once,
// decide which failures can heal and retry those with backoff and jitter,
// report progress, read S3's XML errors, and tell a network drop from a CORS
// block. It knows nothing about files, parts or the page.

/** An upload failure with a message written for the person uploading. */
export class UploadError extends Error {
  /**
   * @param {string} message plain words, safe to show
   * @param {{kind?: string, retryable?: boolean, status?: number, body?: object, code?: string,
   *          retryAfter?: number|null}} options
   *   kind: "network" | "stalled" | "cors" | "etag" | "server" | "bucket" | "cancelled"
   *   body: Datasette's JSON answer, when there was one
   *   code: S3's error code, when the bucket answered with one
   *   retryAfter: milliseconds the answer's Retry-After asked to wait (see parseRetryAfter)
   */
  constructor(message, { kind = "server", retryable = false, status = 0, body = null, code = "", retryAfter = null } = {}) {
    super(message);
    this.kind = kind;
    this.retryable = retryable;
    this.status = status;
    this.body = body;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export const cancelledError = () => new UploadError("Cancelled", { kind: "cancelled" });

/** Full-jitter backoff: a random delay up to base * 2^attempt, capped. */
export function backoffDelay(attempt, base = 500, max = 15000, random = Math.random) {
  return Math.round(random() * Math.min(max, base * 2 ** attempt));
}

// The longest wait a Retry-After header can impose. Datasette's 429 names when
// the actor's oldest unfinished upload expires, which can be upload_expires
// (15 minutes by default) away, though finishing another upload frees a place
// sooner; and a buggy or hostile header ("Retry-After: 99999999") must not
// leave a row frozen with no sign of life. A minute keeps the page asking.
export const RETRY_AFTER_MAX_MS = 60_000;

// An HTTP-date in the one form servers must send (IMF-fixdate, RFC 9110 5.6.7).
// Date.parse alone would take almost anything ("1" is the year 2001).
const IMF_FIXDATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * How long a Retry-After header asks to wait, in milliseconds, at most `max`;
 * null when there is none or it is not valid (negative, fractional, garbage),
 * so the caller keeps its own backoff. Delta-seconds or an IMF-fixdate; a date
 * already past means now (0).
 * @param {string|null|undefined} value the header as sent
 */
export function parseRetryAfter(value, { now = Date.now(), max = RETRY_AFTER_MAX_MS } = {}) {
  const text = typeof value === "string" ? value.trim() : "";
  let ms;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else if (IMF_FIXDATE.test(text) && !Number.isNaN(Date.parse(text))) ms = Math.max(0, Date.parse(text) - now);
  else return null;
  return Math.min(ms, max);
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

// --- waiting out an offline browser ------------------------------------------

// While offline, how often to ask again whether the network is back: the
// `online` event is the quick answer, but a browser can miss it (or report
// online on a link that carries nothing), so the page also probes.
export const OFFLINE_PROBE_MS = 5000;

// A tiny same-origin file to probe with: this module itself.
const PROBE_URL = import.meta.url;

/** Can the page reach Datasette right now? Offline per the browser, or a probe fails: no. */
export async function networkIsUp(signal) {
  if (!navigator.onLine) return false;
  try {
    await fetch(PROBE_URL, { method: "HEAD", cache: "no-store", signal });
    return true;
  } catch {
    if (signal?.aborted) throw cancelledError();
    return false;
  }
}

/** Resolve once the network is back (an `online` event or a probe every OFFLINE_PROBE_MS). */
export async function untilNetworkIsUp(signal, probeEvery = OFFLINE_PROBE_MS) {
  while (!(await networkIsUp(signal))) {
    await new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        window.removeEventListener("online", done);
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        done();
        reject(cancelledError());
      };
      const timer = setTimeout(done, probeEvery);
      window.addEventListener("online", done);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (signal?.aborted) onAbort();
    });
  }
}

/** Did a request fail because nothing got through (rather than an answer refusing it)? */
const lostTheConnection = (error) => error.kind === "network" || error.kind === "stalled";

/**
 * Run `attempt(n)` until it succeeds, retrying errors marked retryable after a
 * backoff delay, or after the error's `retryAfter` when the server asked for
 * longer; `onRetry(error, n, delay)` is told about each retry. A lost
 * connection while the network is down is not a failure of the upload: it
 * waits (`onOffline(error)` is told) until the network is back, for as long as
 * the page is open, and that attempt does not count against `retries`.
 */
export async function withRetries(attempt, { retries = 6, base = 500, max = 15000, signal, onRetry, onOffline } = {}) {
  for (let n = 0, tries = 0; ; tries++) {
    if (signal?.aborted) throw cancelledError();
    try {
      return await attempt(tries);
    } catch (error) {
      if (signal?.aborted) throw cancelledError();
      if (!(error instanceof UploadError) || !error.retryable) throw error;
      if (lostTheConnection(error) && !(await networkIsUp(signal))) {
        onOffline?.(error);
        await untilNetworkIsUp(signal);
        continue;
      }
      if (n >= retries) throw error;
      // At least what the server asked for; the jitter still spreads out
      // clients told the same Retry-After when the backoff is the longer wait.
      const delay = Math.max(error.retryAfter ?? 0, backoffDelay(n, base, max));
      n++;
      onRetry?.(error, n, delay);
      await sleep(delay, signal);
    }
  }
}

/**
 * A concurrency limit: at most `limit` tasks run at once; the rest wait, the
 * lowest `priority` first (the uploader passes the file's size), in order
 * among equals.
 */
export class RequestQueue {
  constructor(limit = 4) {
    this.limit = limit;
    this.running = 0;
    this.waiting = [];
  }

  /** Run `task()` when a slot is free; resolves or rejects with its result. */
  run(task, signal, priority = 0) {
    return new Promise((resolve, reject) => {
      const entry = { task, resolve, reject, signal, priority };
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
      // After every entry of lower or equal priority: a stable insert.
      const at = this.waiting.findIndex((waiting) => waiting.priority > priority);
      this.waiting.splice(at < 0 ? this.waiting.length : at, 0, entry);
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

// --- which answers can heal ------------------------------------------------

/**
 * Is a Datasette answer worth sending again? Our JSON errors say so themselves
 * (`retryable`: false for a missing bucket or denied access, a 502 that will not
 * heal). Without that word: throttling (429), timeouts (408, 504) and
 * "unavailable" (503) heal, and so does a 500 or 502 that is not our JSON (a
 * proxy in front of Datasette, e.g. while it restarts). Our own JSON 502 means
 * S3 refused after the server's S3 client had already retried; that, a 500 of
 * ours and every other 4xx need someone to change something.
 * @param {number} status
 * @param {object|null} data the parsed JSON answer, if any
 */
export function datasetteAnswerCanHeal(status, data) {
  if (typeof data?.retryable === "boolean") return data.retryable;
  if (status === 408 || status === 429 || status === 503 || status === 504) return true;
  if (status === 500 || status === 502) return !data?.errors?.length;
  return false;
}

/** S3's error code and message from its XML error body (empty strings when absent). */
export function parseS3Error(text) {
  const field = (name) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(text || "")?.[1] || "";
  return { code: field("Code"), message: field("Message") };
}

const S3_EXPIRED_CODES = new Set(["ExpiredToken", "TokenRefreshRequired", "RequestExpired", "ExpiredRequest"]);

/** Did S3 refuse a presigned request because its URL or the keys signing it expired? */
export function isExpiredSignature(status, { code, message }) {
  return status === 403 && (S3_EXPIRED_CODES.has(code) || /expired/i.test(message));
}

/** One header's value from XMLHttpRequest's getAllResponseHeaders() text, or null. */
export function headerFrom(allHeaders, name) {
  const wanted = name.toLowerCase() + ":";
  const line = (allHeaders || "").split("\r\n").find((l) => l.toLowerCase().startsWith(wanted));
  return line === undefined ? null : line.slice(wanted.length).trim();
}

/**
 * A bucket's non-2xx answer as an UploadError. S3 asks clients to retry its
 * 500 and 503 (SlowDown); 408, 429, 502 and 504 are timeouts and gateways. A
 * 403 for an expired URL heals only with a new signature, so it is retried
 * when the caller signs again (`resignable`). Everything else (NoSuchBucket,
 * AccessDenied, EntityTooLarge, ...) stays as it is however often it is sent.
 * `response.headers` is getAllResponseHeaders()' text: a Retry-After there
 * (from a store or proxy that sends one and lets CORS expose it) is honoured.
 */
export function bucketError(response, { resignable = false } = {}) {
  const { status } = response;
  const s3 = parseS3Error(response.text);
  const expired = isExpiredSignature(status, s3);
  const detail = [status, s3.code].filter(Boolean).join(" ");
  const said = s3.message ? `: ${s3.message}` : "";
  return new UploadError(`The bucket refused the upload (${detail})${said}`, {
    kind: "bucket",
    status,
    code: s3.code,
    retryable: [408, 429, 500, 502, 503, 504].includes(status) || (expired && resignable),
    retryAfter: parseRetryAfter(headerFrom(response.headers, "Retry-After")),
  });
}

/** What a retry waits for, in a few words for the file's row. */
export function retryReason(error) {
  if (error.kind === "network") return "Connection lost";
  if (error.kind === "stalled") return "The connection stalled";
  if (error.kind === "bucket") {
    return error.status === 429 || error.code === "SlowDown" ? "The bucket asked to slow down" : `The bucket answered ${error.status}`;
  }
  if (error.status === 429) return "Too many uploads in progress";
  return `Datasette answered ${error.status}`;
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
      retryable: datasetteAnswerCanHeal(response.status, data),
      body: data,
      retryAfter: parseRetryAfter(response.headers.get("Retry-After")),
    });
  }
  return data;
}

// --- talking to the bucket -------------------------------------------------

// Origins that have answered a cross-origin upload request in this page: a later
// failure without a response there is a network problem, not a CORS rule.
const reachedOrigins = new Set();

/**
 * Why did a request to the bucket get no response at all? A page sees the
 * same status 0 for a dropped connection, a CORS block, and (on S3, whose
 * error answers for a missing bucket carry no CORS headers) a bucket that is
 * not there. So: offline, or an origin that answered before, is the network.
 * Otherwise ask Datasette, same-origin, whether the bucket is there
 * (`checkBucket` rejects with its answer when it is not); if it is, a no-cors
 * GET to the bucket's origin resolves when the browser can reach it, and then
 * only CORS is left.
 */
export async function diagnoseNoResponse(url, checkBucket) {
  const origin = new URL(url, location.href).origin;
  const network = new UploadError(`The connection to ${origin} was lost`, { kind: "network", retryable: true });
  if (reachedOrigins.has(origin) || !navigator.onLine) return network;
  if (checkBucket) {
    try {
      await checkBucket();
    } catch (error) {
      // Datasette itself unreachable (or busy): the network, most likely.
      return error instanceof UploadError && !error.retryable ? error : network;
    }
  }
  try {
    await fetch(origin + "/", { mode: "no-cors", cache: "no-store" });
  } catch {
    return network;
  }
  return new UploadError(`The browser blocked the upload to ${origin}: the bucket's CORS rule does not allow this page`, {
    kind: "cors",
  });
}

// How long a request to the bucket may go without sending or receiving a byte
// before it is given up and retried. A connection can stall without ever
// failing (a NAT mapping or proxy that silently stopped forwarding), and the
// upload would wait on it for good. Progress events come many times a second
// on any working link, and a part's answer follows its last byte within
// seconds, so a minute of silence is a dead connection.
export const STALL_TIMEOUT_MS = 60_000;

/**
 * Send one request to the bucket with XMLHttpRequest (fetch cannot report
 * upload progress). Resolves with {status, headers} (only the `readHeaders`
 * asked for: reading one the bucket does not expose logs a console error);
 * rejects with an UploadError that says whether it may heal.
 * @param {{method: string, url: string, body: any, headers?: object, signal?: AbortSignal,
 *          onProgress?: (bytes: number) => void, readHeaders?: string[], resignable?: boolean,
 *          checkBucket?: () => Promise<unknown>, stallTimeout?: number}} request
 *   stallTimeout: milliseconds without progress before the request is
 *   abandoned with a retryable "stalled" error (STALL_TIMEOUT_MS by default)
 */
export function sendToBucket({
  method,
  url,
  body,
  headers = {},
  signal,
  onProgress,
  readHeaders = [],
  resignable = false,
  checkBucket,
  stallTimeout = STALL_TIMEOUT_MS,
}) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelledError());
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    const onAbort = () => xhr.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    let stalled = false;
    let watchdog;
    const stillMoving = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        stalled = true;
        xhr.abort();
      }, stallTimeout);
    };
    const finish = () => {
      clearTimeout(watchdog);
      signal?.removeEventListener("abort", onAbort);
    };
    xhr.upload.onprogress = (event) => {
      stillMoving();
      onProgress?.(event.loaded);
    };
    xhr.onprogress = xhr.onreadystatechange = stillMoving;
    xhr.onload = () => {
      finish();
      reachedOrigins.add(new URL(url, location.href).origin);
      if (xhr.status < 200 || xhr.status >= 300) {
        // getAllResponseHeaders lists only what CORS exposes, and, unlike
        // getResponseHeader for a header it hides, logs no console error.
        const answer = { status: xhr.status, text: xhr.responseText, headers: xhr.getAllResponseHeaders() };
        reject(bucketError(answer, { resignable }));
        return;
      }
      const read = Object.fromEntries(readHeaders.map((name) => [name, xhr.getResponseHeader(name)]));
      resolve({ status: xhr.status, headers: read });
    };
    xhr.onerror = xhr.ontimeout = () => {
      finish();
      onProgress?.(0);
      diagnoseNoResponse(url, checkBucket).then(reject);
    };
    xhr.onabort = () => {
      finish();
      onProgress?.(0);
      if (!stalled) return reject(cancelledError());
      const seconds = Math.round(stallTimeout / 1000);
      const message = `Nothing was sent or received for ${seconds} s: the connection to the bucket stalled`;
      reject(new UploadError(message, { kind: "stalled", retryable: true }));
    };
    stillMoving();
    xhr.send(body);
  });
}
