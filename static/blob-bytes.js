// Reading a Blob's bytes into buffers the caller reuses, so hashing a file
// leaves no garbage behind. A fresh ArrayBuffer per read is garbage once
// hashed, and Chromium lets hundreds of MiB of it pile up before collecting
// (measured by benchmarks/browser_hashing.py). A BYOB ("bring your own
// buffer") reader fills our buffer instead. Each read hands the buffer to the
// stream and back as a new ArrayBuffer object over the same memory, so both
// functions say which buffer to use next.
//
// Where Blob streams are not byte streams (browsers that predate that part of
// the File API), both fall back to the stream's or the blob's own buffers:
// correct, but left to the garbage collector.
//
// Every stream is held in streamsBeingRead until its reading ends. Chromium
// (156, measured in e2e/test_browser_hashing.py) garbage-collects a Blob's
// stream whose only references are its own pending read, and that read then
// never settles: a hash, and the upload waiting on it, hung for good.

/** The streams being read right now: a strong reference keeps each one alive. */
const streamsBeingRead = new Set();

/** The result of read(stream), with the stream kept alive until read settles. */
async function whileHeld(stream, read) {
  streamsBeingRead.add(stream);
  try {
    return await read(stream);
  } finally {
    streamsBeingRead.delete(stream);
  }
}

/**
 * Call onChunk(Uint8Array) with each chunk of the blob, in order, read into
 * `buffer` (its size is the largest chunk). The view is valid only during the call.
 * @returns {Promise<ArrayBuffer>} the buffer to use next (the given one is detached)
 */
export function eachChunk(blob, buffer, onChunk) {
  return whileHeld(blob.stream(), (stream) => readChunks(stream, buffer, onChunk));
}

async function readChunks(stream, buffer, onChunk) {
  const reader = byobReader(stream);
  if (!reader) {
    const plain = stream.getReader();
    for (let read = await plain.read(); !read.done; read = await plain.read()) onChunk(read.value);
    return buffer;
  }
  for (;;) {
    const { done, value } = await reader.read(new Uint8Array(buffer));
    buffer = value.buffer;
    if (done) return buffer;
    onChunk(value);
  }
}

/**
 * The whole blob read into `buffer` (at least blob.size bytes long).
 * @returns {Promise<Uint8Array>} a view of blob.size bytes; its .buffer is the
 *   buffer to use next (the given one is detached)
 */
export function readWhole(blob, buffer) {
  return whileHeld(blob.stream(), (stream) => readInto(stream, blob, buffer));
}

async function readInto(stream, blob, buffer) {
  const reader = byobReader(stream);
  if (!reader) return new Uint8Array(await blob.arrayBuffer());
  // Never ask for zero bytes: a zero-length BYOB read is an error.
  for (let offset = 0; offset < blob.size; ) {
    const { done, value } = await reader.read(new Uint8Array(buffer, offset, blob.size - offset));
    buffer = value.buffer;
    if (done) throw new Error(`the file ended after ${offset} of ${blob.size} bytes: did it change on disk?`);
    offset += value.byteLength;
  }
  reader.releaseLock();
  return new Uint8Array(buffer, 0, blob.size);
}

/** A BYOB reader on the stream, or null where Blob streams are not byte streams. */
function byobReader(stream) {
  try {
    return stream.getReader({ mode: "byob" });
  } catch {
    return null;
  }
}
