// What the uploader says to screen readers: a status live region, and the
// sentence each change of a file's state is worth. A row's text changes many
// times a second; only these moments are read out.

/** The sentence for an upload's state, or "" for a state that is not announced. */
export function announcement(upload) {
  const name = upload.file.name;
  if (upload.status === "done") return `Uploaded ${name}`;
  if (upload.status === "error") return `Failed: ${name}. ${upload.error?.message || ""}`.trim();
  if (upload.status === "cancelled") return `Cancelled ${name}`;
  if (upload.status === "paused") return `Paused ${name}`;
  // A waiting retry is announced once, without its countdown.
  if (upload.status === "uploading" && upload.waiting) {
    const { reason, until } = upload.waiting;
    return until === null ? `${name}: ${reason}` : `${name}: ${reason}; retrying`;
  }
  return "";
}

/**
 * A visually hidden role="status" region. Each sentence is a new line in it
 * (the last few kept), so sentences that come together are all read, in order.
 */
export class Announcer {
  static KEPT = 5;

  constructor(region) {
    this.region = region;
    region.setAttribute("role", "status");
    region.setAttribute("aria-live", "polite");
  }

  say(sentence) {
    const line = document.createElement("p");
    line.textContent = sentence;
    this.region.append(line);
    while (this.region.childElementCount > Announcer.KEPT) this.region.firstElementChild.remove();
  }
}

/** What hides the region from sight but not from screen readers. */
export const VISUALLY_HIDDEN =
  "position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0;";
