// A module Web Worker that computes one File's (or Blob's) SHA-256 in one
// pass, a slice at a time, reading through one reused 1 MiB buffer
// (blob-bytes.js): its memory stays flat whatever the file's size.
// checksums.js starts one per file and terminates it to cancel; use
// wholeFileSha256 there rather than this directly.
//
// In:  {blob: Blob}
// Out: {type: "done", hex}   the whole file's SHA-256, lowercase hex
//      {type: "error", name, message}

import { eachChunk } from "./blob-bytes.js";
// hash-wasm's UMD build: as a module it defines globalThis.hashwasm.
import "./vendor/hash-wasm/sha256.umd.min.js";

// Read this much at a time; larger buys no speed (measured in Chromium).
const BUFFER_BYTES = 1024 * 1024;

self.onmessage = async ({ data }) => {
  try {
    postMessage({ type: "done", hex: await hashBlob(data.blob) });
  } catch (error) {
    postMessage({ type: "error", name: error?.name || "Error", message: String(error?.message || error) });
  }
};

async function hashBlob(blob) {
  if (!(blob instanceof Blob)) throw new TypeError("wholeFileSha256 needs a File or Blob");
  const hasher = await globalThis.hashwasm.createSHA256();
  await eachChunk(blob, new ArrayBuffer(BUFFER_BYTES), (chunk) => hasher.update(chunk));
  return hasher.digest("hex");
}
