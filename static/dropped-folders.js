// Files out of a drop, with dropped folders walked: a folder gives each file in
// it, however deep, each knowing its path inside the drop ("photos/2024/a.jpg").
// A drop's file list holds a folder as one empty "file" of its own name, which
// uploaded as "photos · 0 B" and failed.

/**
 * The files a drop carries. The entries are taken before the first await: a
 * DataTransfer's items are emptied once the drop event's handlers return.
 */
export async function filesFromDrop(dataTransfer) {
  const items = [...(dataTransfer?.items || [])].filter((item) => item.kind === "file");
  const entries = items.map((item) => item.webkitGetAsEntry?.());
  // No entries API (or a drop of something else): the plain file list.
  if (!entries.length || entries.some((entry) => !entry)) return [...(dataTransfer?.files || [])];
  const files = [];
  for (const entry of entries) await collect(entry, files);
  return files;
}

/** A file's path inside the folder it was dropped or chosen in, or "" for a file on its own. */
export function relativePath(file) {
  return file.dfs3RelativePath || file.webkitRelativePath || "";
}

async function collect(entry, files) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    // A top-level file's path is just its name: it came in no folder.
    const path = entry.fullPath.replace(/^\//, "");
    if (path !== file.name) Object.defineProperty(file, "dfs3RelativePath", { value: path });
    files.push(file);
    return;
  }
  const reader = entry.createReader();
  // readEntries answers in batches (100 in Chromium) until it answers none.
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) return;
    for (const child of batch) await collect(child, files);
  }
}
