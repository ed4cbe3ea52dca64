"""axe-core in the browser tests: the vendored axe.min.js (e2e/vendor/axe-core,
see its README) injected into a page, and its critical and serious findings."""

from __future__ import annotations

from pathlib import Path

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"

# What issue 22 item 10 asks: none of these on our pages. Moderate and minor
# findings (landmarks, heading order) are about Datasette's page frame.
BLOCKING = ("critical", "serious")


def axe_violations(page, context: str = "body") -> list[str]:
    """axe's critical and serious violations within `context` (a CSS selector),
    one line each: impact, rule id, and the elements it found, for a readable failure."""
    if not page.evaluate("() => Boolean(window.axe)"):
        page.add_script_tag(path=str(AXE))
    results = page.evaluate("context => axe.run(context, {resultTypes: ['violations']})", context)
    return [
        f"{v['impact']} {v['id']}: {v['help']} -> " + "; ".join(" ".join(n["target"]) for n in v["nodes"])
        for v in results["violations"]
        if v["impact"] in BLOCKING
    ]
