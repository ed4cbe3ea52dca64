"""Peak resident memory (and CPU time) of another process while a block of code runs.

Linux only: reads /proc/PID/status. Before the block the kernel's high-water
mark (VmHWM) is reset through /proc/PID/clear_refs where we may write it, so
the peak belongs to this block alone; a 10 ms sampler of VmRSS backs it up
where we may not.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

MiB = 1024**2


def status_kib(pid: int, field: str) -> int:
    """One `VmXXX:` field of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_bytes(pid: int) -> int:
    """The process's resident set size now."""
    return status_kib(pid, "VmRSS") * 1024


class PeakRSS:
    """`with PeakRSS(pid) as peak: ...` then `peak.idle`, `peak.peak`, `peak.growth_mib`."""

    def __init__(self, pid: int, interval: float = 0.01):
        self.pid = pid
        self.interval = interval
        self.idle = 0
        self.peak = 0
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.idle = rss_bytes(self.pid)
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.peak = self.idle
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.hwm_reset:
            self.peak = max(self.peak, status_kib(self.pid, "VmHWM") * 1024)

    @property
    def growth_mib(self) -> float:
        """Peak above the resident size just before the block, in MiB."""
        return (self.peak - self.idle) / MiB


def chromium_processes(browser) -> list[dict]:
    """A Playwright Chromium's processes: {"type": "browser" | "renderer" | "GPU" | ..., "id": pid}."""
    session = browser.new_browser_cdp_session()
    try:
        return session.send("SystemInfo.getProcessInfo")["processInfo"]
    finally:
        session.detach()


def chromium_renderer_pids(browser) -> list[int]:
    """Process ids of a Playwright Chromium's renderers (pages and their workers run there)."""
    return [p["id"] for p in chromium_processes(browser) if p["type"] == "renderer"]


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used so far, user and system (its own, not its children's)."""
    # Fields 14 and 15 of /proc/PID/stat; split after the command name, which may hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
