"""CPU time each part of a benchmark spent, read from /proc: where a CPU-bound run's time went.

On one 2-core machine the browser, Datasette, the store and the client share
the CPU, so a ratio to boto3 can measure CPU rather than round trips. Taking
each part's CPU seconds over the same upload, per file, says which: a run
whose parts add up to 2 CPU-seconds a second was bound by the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used; 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name, in parentheses, may hold spaces: fields count from after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(root: int) -> list[int]:
    """Every process below `root`, at any depth."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def started_here(matches) -> list[int]:
    """The processes below this one whose command line `matches` (bytes -> bool)."""
    found = []
    for pid in descendants(os.getpid()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if matches(command):
            found.append(pid)
    return found


def chromium_processes(renderers: bool) -> list[int]:
    """The Chromium processes this process started (through Playwright's driver):
    the renderers, where the page runs, or the others (the browser process, its
    network service and GPU process)."""
    return started_here(
        lambda command: b"chromium" in command and (b"--type=renderer" in command) == renderers
    )


class CpuMeter:
    """Snapshots of named parts' CPU seconds; a part is a function naming its processes now."""

    def __init__(self, parts: dict[str, callable]):
        self.parts = parts

    def snapshot(self) -> dict[str, dict[int, float]]:
        return {name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.parts.items()}

    @staticmethod
    def spent(before: dict, after: dict) -> dict[str, float]:
        """CPU seconds per part between two snapshots. A process started in
        between counts from zero; one that ended in between is not counted
        (take the second snapshot before closing anything)."""
        return {
            name: sum(seconds - before.get(name, {}).get(pid, 0.0) for pid, seconds in pids.items())
            for name, pids in after.items()
        }


def playwright_driver() -> list[int]:
    """Playwright's driver (node), which hears of every request Chromium makes:
    the test harness's own cost, which a user's browser does not pay."""
    return started_here(lambda command: b"playwright" in command and b"chromium" not in command)
