// Keep the screen on while files upload, where the browser has a Screen Wake
// Lock (navigator.wakeLock): a laptop or phone that sleeps mid-upload drops
// every connection. The browser lets go of the lock when the page is hidden;
// it is asked for again when the page is shown while uploads still run.

export class ScreenWakeLock {
  constructor(wakeLock = navigator.wakeLock) {
    this.wakeLock = wakeLock;
    this.wanted = false;
    this.sentinel = null;
    this.asking = false;
    this.refused = false; // asked and refused: not again until the page is shown anew
    document.addEventListener("visibilitychange", () => {
      this.refused = false;
      this.sync();
    });
  }

  /** Hold the lock while `wanted`, release it when not; cheap to call on every redraw. */
  hold(wanted) {
    this.wanted = wanted;
    this.sync();
  }

  sync() {
    if (!this.wakeLock) return;
    if (!this.wanted && this.sentinel) {
      const sentinel = this.sentinel;
      this.sentinel = null;
      sentinel.release().catch(() => {});
      return;
    }
    if (!this.wanted || this.sentinel || this.asking || this.refused || document.visibilityState !== "visible") return;
    this.asking = true;
    this.wakeLock.request("screen").then(
      (sentinel) => {
        this.asking = false;
        this.sentinel = sentinel;
        // Let go by the browser (the page was hidden): ask again when it is shown.
        sentinel.addEventListener("release", () => {
          if (this.sentinel === sentinel) this.sentinel = null;
        });
        this.sync(); // the uploads may have finished while it was asked for
      },
      () => {
        this.asking = false;
        this.refused = true;
      },
    );
  }
}
