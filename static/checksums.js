// SHA-256 digests for uploads, in the two forms an upload needs:
// - sha256Base64: base64 of the 32 raw digest bytes, the value S3 takes in
//   x-amz-checksum-sha256, for one part or one small file;
// - wholeFileSha256: lowercase hex of a blob however large, computed in
//   sha256-worker.js with memory that stays flat whatever its size;
//   sha256Base64 uses it for blobs too large for WebCrypto, and where the page
//   has no WebCrypto.
//
// WebCrypto (crypto.subtle) exists only in secure contexts: https pages, and
// http pages from localhost, 127.0.0.1 or [::1]. A Datasette served over plain
// http from any other host has no crypto.subtle; there sha256Base64 uses the
// worker (hash-wasm) instead: the same digest, slower (WebAssembly has no SHA
// instructions) but off the main thread. So callers never check for WebCrypto.

import { readWhole } from "./blob-bytes.js";

const MIB = 1024 * 1024;

/**
 * The largest blob sha256Base64 gives to WebCrypto, which digests one buffer
 * and so reads the whole blob into memory. Larger blobs go to the worker.
 */
export const WEBCRYPTO_MAX_BYTES = 64 * MIB;

const WORKER_URL = new URL("./sha256-worker.js", import.meta.url);

/** Base64 of raw bytes (a Uint8Array or ArrayBuffer). */
export function bytesToBase64(bytes) {
  let binary = "";
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** "e3b0c442..." -> "47DEQpj8..." (the same bytes); throws TypeError on anything but whole hex bytes. */
export function hexToBase64(hex) {
  if (typeof hex !== "string" || !/^(?:[0-9a-fA-F]{2})*$/.test(hex)) {
    throw new TypeError(`not a hex string of whole bytes: ${String(hex).slice(0, 80)}`);
  }
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytesToBase64(bytes);
}

/**
 * SHA-256 of a part or a small file, as base64: the value of x-amz-checksum-sha256.
 * WebCrypto when the page has it and the blob is at most WEBCRYPTO_MAX_BYTES
 * (it reads the blob into memory), otherwise the worker. Safe to call for
 * several parts at once.
 * @param {Blob} blob
 * @param {{signal?: AbortSignal}} [options] an abort rejects with signal.reason
 * @returns {Promise<string>}
 */
export async function sha256Base64(blob, { signal } = {}) {
  if (!(blob instanceof Blob)) throw new TypeError("sha256Base64 needs a File or Blob");
  signal?.throwIfAborted();
  if (!globalThis.crypto?.subtle || blob.size > WEBCRYPTO_MAX_BYTES) {
    return hexToBase64(await wholeFileSha256(blob, { signal }));
  }
  const bytes = await readWhole(blob, spareBuffers.take(blob.size));
  // WebCrypto copies its input before it returns, so the buffer can go back at once.
  const digesting = crypto.subtle.digest("SHA-256", bytes);
  spareBuffers.giveBack(bytes.buffer);
  const digest = await digesting;
  // WebCrypto cannot be interrupted; an abort meanwhile still wins.
  signal?.throwIfAborted();
  return bytesToBase64(digest);
}

/**
 * Part-sized buffers for sha256Base64 to reuse (see blob-bytes.js for why).
 * Held weakly: several parts hashed at once each reuse one, and once uploads
 * stop the next garbage collection frees them.
 */
const spareBuffers = {
  kept: [],
  take(size) {
    while (this.kept.length) {
      const buffer = this.kept.pop().deref();
      if (buffer && buffer.byteLength >= size) return buffer;
    }
    return new ArrayBuffer(size);
  },
  giveBack(buffer) {
    this.kept.push(new WeakRef(buffer));
  },
};

/**
 * SHA-256 of a whole file, as lowercase hex, computed in a Web Worker that
 * reads the file through one reused 1 MiB buffer.
 * @param {Blob} file a File or Blob (the worker receives a handle, not a copy)
 * @param {{signal?: AbortSignal}} [options] an abort terminates the worker and
 *   rejects with signal.reason
 * @returns {Promise<string>} rejects with the worker's error (TypeError,
 *   NotReadableError when the file changed or vanished, ...)
 */
export function wholeFileSha256(file, { signal } = {}) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const worker = new Worker(WORKER_URL, { type: "module" });
    const finish = (settle, value) => {
      worker.terminate();
      signal?.removeEventListener("abort", onAbort);
      settle(value);
    };
    const onAbort = () => finish(reject, signal.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    worker.onmessage = ({ data }) => {
      if (data.type === "done") finish(resolve, data.hex);
      else finish(reject, workerError(data.name, data.message));
    };
    worker.onerror = (event) => {
      // The worker or hash-wasm failed to load or compile (a CSP without
      // worker-src or 'wasm-unsafe-eval', say): reject rather than hang.
      event.preventDefault();
      finish(reject, new Error(`The SHA-256 worker failed: ${event.message || `could not load ${WORKER_URL}`}`));
    };
    try {
      worker.postMessage({ blob: file });
    } catch (error) {
      finish(reject, error); // DataCloneError: not something a worker can receive
    }
  });
}

/** The worker's error, keeping its name (TypeError, NotReadableError, ...) for callers to tell apart. */
function workerError(name, message) {
  const Type = { TypeError }[name] || Error;
  const error = new Type(message);
  error.name = name;
  return error;
}
