"""Turn measurements into the markdown table and the PNG chart."""

from __future__ import annotations

import math

MB = 1000**2


def fmt(value, digits=1, unit="") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}{unit}"


def size_label(size: int) -> str:
    return f"{size // 1024**3} GiB" if size >= 1024**3 else f"{size // 1024**2} MiB"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table from a header and rows of already-rendered cells."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def path_by_size_table(results: dict, sizes: list[int], paths: list[tuple[str, str]], cell) -> str:
    """One row per path, one column per file size; `cell(entry)` renders a measured entry (or None)."""
    header = "| path | " + " | ".join(size_label(s) for s in sizes) + " |"
    lines = [header, "|---" * (len(sizes) + 1) + "|"]
    for key, label in paths:
        cells = [cell(results.get(key, {}).get(size)) for size in sizes]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def throughput_cell(entry: dict | None) -> str:
    if entry is None:
        return "not run"
    if entry.get("error"):
        return f"**failed**: {entry['error']}"
    cell = f"{fmt(entry['mbps'])} MB/s"
    if entry.get("ratio") is not None:
        cell += f" ({entry['ratio']:.2f}x)"
    return cell


def memory_cell(entry: dict | None) -> str:
    if entry is None or entry.get("rss_growth_mib") is None:
        return "—"
    note = " (refused)" if entry.get("error") else ""
    return f"+{entry['rss_growth_mib']:.1f} MiB{note}"


def throughput_table(results: dict, sizes: list[int], paths: list[tuple[str, str]]) -> str:
    """MB/s and ratio to the boto3 limit, one row per path."""
    return path_by_size_table(results, sizes, paths, throughput_cell)


def memory_table(results: dict, sizes: list[int], paths: list[tuple[str, str]]) -> str:
    """Datasette's peak RSS above idle during each upload, in MiB."""
    return path_by_size_table(results, sizes, paths, memory_cell)


def metadata_table(metadata: dict) -> str:
    """prepare/complete rps and latency per concurrency, ours against 0.1a2."""
    lines = [
        "| server | clients | prepare req/s | prepare p50 | prepare p99 | prepare CPU/req "
        "| complete req/s | complete p50 | complete p99 | complete CPU/req | failed requests |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for server, levels in metadata.items():
        for clients, level in levels.items():
            if "error" in level:
                lines.append(f"| {server} | {clients} | **failed**: {level['error']} |||||||||")
                continue
            p, c = level["prepare"], level["complete"]
            lines.append(
                f"| {server} | {clients} | {p['rps']:.0f} | {p['p50_ms']:.1f} ms | {p['p99_ms']:.1f} ms "
                f"| {cpu_per_request(p)} | {c['rps']:.0f} | {c['p50_ms']:.1f} ms | {c['p99_ms']:.1f} ms "
                f"| {cpu_per_request(c)} | {p['failures'] + c['failures']} |"
            )
    return "\n".join(lines)


def cpu_per_request(level: dict) -> str:
    """The Datasette process's CPU per request (all its threads), or a dash when not measured."""
    return "-" if level.get("cpu_ms") is None else f"{level['cpu_ms']:.2f} ms"


def download_table(downloads: dict) -> str:
    lines = [
        "| server | clients | requests/s | p50 | p99 | Datasette CPU/req | failures |",
        "|---|---|---|---|---|---|---|",
    ]
    for server, levels in downloads.items():
        for clients, level in levels.items():
            if "error" in level:
                lines.append(f"| {server} | {clients} | **failed**: {level['error']} |||||")
                continue
            lines.append(
                f"| {server} | {clients} | {level['rps']:.0f} | {level['p50_ms']:.1f} ms "
                f"| {level['p99_ms']:.1f} ms | {cpu_per_request(level)} | {level['failures']} |"
            )
    return "\n".join(lines)


def chart(results: dict, sizes: list[int], paths: list[tuple[str, str]], out_path, title: str) -> bool:
    """A grouped bar chart of MB/s by file size and path; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / len(paths)
    for index, (key, label) in enumerate(paths):
        values, refused = [], []
        for position, size in enumerate(sizes):
            entry = results.get(key, {}).get(size) or {}
            values.append(entry.get("mbps") or 0)
            if entry.get("error"):
                refused.append(position)
        xs = [p + (index - (len(paths) - 1) / 2) * width for p in range(len(sizes))]
        ax.bar(xs, values, width, label=label)
        for position in refused:
            ax.text(xs[position], 1, "refused", rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(sizes)), [size_label(s) for s in sizes])
    ax.set_ylabel("MB/s (higher is better)")
    ax.set_xlabel("file size")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return True
