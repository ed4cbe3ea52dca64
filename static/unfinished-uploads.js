// After a reload: which multipart uploads this browser started here and can
// still continue, and how much of each the bucket already holds. The tokens
// are in the ResumeStore (localStorage, keyed by name, size and last
// modified); Datasette says for each whether its upload is still open, and
// lists its parts (POST .../multipart/parts, permission-checked like every
// step). No file is needed to ask. Nothing is drawn here.

/**
 * The remembered uploads still open, oldest first by last modified:
 * [{name, size, lastModified, token, expiresAt, inBucket}], inBucket in bytes.
 * One past its expiry is forgotten: it can no longer be continued. One
 * Datasette does not list parts for is left out but still remembered: a
 * completed upload whose answer was lost looks the same as a cancelled one
 * here, and only create, given the file again, tells which file it became.
 * @param {import("./upload-machine.js").ResumeStore} resume
 * @param {import("./upload-machine.js").DatasetteApi} api
 */
export async function findUnfinished(resume, api, signal, now = Date.now()) {
  const found = await Promise.all(
    resume.entries().map(async (entry) => {
      if (entry.expiresAt && entry.expiresAt <= now) {
        resume.forget(entry);
        return null;
      }
      try {
        const { parts } = await api.call("parts", { upload_token: entry.token }, signal);
        return { ...entry, inBucket: parts.reduce((sum, part) => sum + part.size, 0) };
      } catch {
        return null;
      }
    }),
  );
  return found.filter(Boolean).sort((a, b) => a.lastModified - b.lastModified);
}

/** Give up an unfinished upload: abort it in S3 (its parts stop costing) and forget it. */
export async function discardUnfinished(resume, api, entry) {
  await api.call("abort", { upload_token: entry.token });
  resume.forget(entry);
}
