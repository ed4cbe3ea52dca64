// How progress reads on the page: bytes and durations in words, and the speed
// over the last few seconds. Display only; the uploads never look at it.

/** Bytes in decimal units, as file managers show them: "315 MB". A speed
 * can be a fraction of a byte per second: below 1 kB it is shown whole, "11 B". */
export function formatBytes(bytes) {
  if (Math.round(bytes) < 1000) return `${Math.round(bytes)} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes / 1000;
  let i = 0;
  while (value >= 1000 && i < units.length - 1) {
    value /= 1000;
    i++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[i]}`;
}

/** Seconds as "42 s", "3 min 5 s" or "1 h 20 min"; "" for an unknown duration. */
export function formatDuration(seconds) {
  if (!isFinite(seconds)) return "";
  seconds = Math.ceil(seconds);
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

/** What a waiting retry says in its row: "Connection lost; retrying in 4 s", counting down. */
export function waitingText(waiting, now = Date.now()) {
  if (waiting.until === null) return waiting.reason;
  const seconds = Math.ceil((waiting.until - now) / 1000);
  return seconds >= 1 ? `${waiting.reason}; retrying in ${seconds} s` : `${waiting.reason}; retrying`;
}

/**
 * Bytes per second over a sliding window, for speed and time left. Fed the
 * bytes sent *in this page* (not parts reused from an earlier visit), so a
 * resumed upload does not read as gigabytes a second; reads 0 once nothing has
 * moved for `idleMs`, so a stalled or offline upload shows no speed.
 */
export class SpeedMeter {
  constructor(windowMs = 5000, now = () => performance.now(), idleMs = 2000) {
    this.windowMs = windowMs;
    this.now = now;
    this.idleMs = idleMs;
    this.samples = [];
    this.movedAt = null;
  }

  /** Record the total bytes sent so far. */
  add(totalBytes) {
    const t = this.now();
    const last = this.samples[this.samples.length - 1];
    if (!last || last[1] !== totalBytes) this.movedAt = t;
    this.samples.push([t, totalBytes]);
    while (this.samples.length > 2 && t - this.samples[0][0] > this.windowMs) this.samples.shift();
  }

  /** Bytes per second, or 0 until there are two samples or while nothing moves. */
  rate() {
    if (this.samples.length < 2) return 0;
    if (this.now() - this.movedAt > this.idleMs) return 0;
    const [t0, b0] = this.samples[0];
    const [t1, b1] = this.samples[this.samples.length - 1];
    return t1 > t0 ? Math.max(0, ((b1 - b0) * 1000) / (t1 - t0)) : 0;
  }
}
