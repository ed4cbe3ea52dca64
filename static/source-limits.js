// What the source takes, told before anything is chosen: its max_file_size and
// allowed_content_types, as the page hands them to the element (max-file-size,
// accept). Datasette still enforces both at prepare; this only spares the user
// a refusal they could have seen coming.

import { formatBytes } from "./progress-display.js";

/** The content types from the accept attribute ("text/plain,image/*"), or [] for any. */
export function acceptedTypes(accept) {
  const types = (accept || "").split(",").map((type) => type.trim()).filter(Boolean);
  return types.includes("*/*") ? [] : types;
}

/** "Each file up to 5.0 MB · Types: text/plain, image/*", or "" when nothing is limited. */
export function limitsText(maxFileSize, types) {
  const said = [];
  if (maxFileSize > 0) said.push(`Each file up to ${formatBytes(maxFileSize)}`);
  if (types.length) said.push(`Types: ${types.join(", ")}`);
  return said.join(" · ");
}
