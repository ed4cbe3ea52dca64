// A module Web Worker that computes one File's (or Blob's) SHA-256 in one
// pass, a slice at a time, reading through one reused 1 MiB buffer
// (blob-bytes.js): its memory stays flat whatever the file's size.
// checksums.js starts one per file and terminates it to cancel; use
// wholeFileSha256 there rather than this directly.
//
// In:  {blob: Blob, partSize: number}
// Out: {type: "progress", loaded, total}   after each slice of partSize bytes
//      {type: "done", hex}   the whole file's SHA-256, lowercase hex
//      {type: "error", name, message}

import { eachChunk } from "./blob-bytes.js";
// hash-wasm's UMD build: as a module it defines globalThis.hashwasm.
import "./vendor/hash-wasm/sha256.umd.min.js";

// Read this much at a time; larger buys no speed (measured in Chromium).
const BUFFER_BYTES = 1024 * 1024;

self.onmessage = async ({ data }) => {
  try {
    postMessage({ type: "done", hex: await hashBlob(data.blob, data.partSize) });
  } catch (error) {
    postMessage({ type: "error", name: error?.name || "Error", message: String(error?.message || error) });
  }
};

async function hashBlob(blob, partSize) {
  if (!(blob instanceof Blob)) throw new TypeError("wholeFileSha256 needs a File or Blob");
  if (!Number.isSafeInteger(partSize) || partSize < 1) {
    throw new RangeError(`partSize must be a positive whole number of bytes, not ${partSize}`);
  }
  const hasher = await globalThis.hashwasm.createSHA256();
  let buffer = new ArrayBuffer(Math.min(partSize, BUFFER_BYTES));
  for (let start = 0; start < blob.size; start += partSize) {
    buffer = await eachChunk(blob.slice(start, start + partSize), buffer, (chunk) => hasher.update(chunk));
    postMessage({ type: "progress", loaded: Math.min(start + partSize, blob.size), total: blob.size });
  }
  return hasher.digest("hex");
}
