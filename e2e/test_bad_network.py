"""The bundled uploader tells the truth about a busy network and a busy user, in
real Chromium: a small file behind a big one says "Waiting" and goes first, and
speeds, countdowns and totals read honestly. (An offline browser:
e2e/test_offline.py; a file chosen twice: e2e/test_duplicate_file.py.)"""

from __future__ import annotations

from e2e.page_helpers import (
    PAGE,
)

STATIC = "/-/static-plugins/datasette_files_s3"


def with_attribute(page, name: str, value: str) -> None:
    """Replace the page's uploader with one that has this attribute (read when it connects)."""
    page.evaluate(
        """([name, value]) => {
            const old = document.querySelector("datasette-files-s3-upload");
            const element = old.cloneNode(false);
            element.setAttribute(name, value);
            old.replaceWith(element);
        }""",
        [name, value],
    )


def test_a_file_whose_requests_wait_for_a_slot_reads_waiting_and_smaller_files_go_first(page):
    """With every request slot taken (a big file's parts), a started file that has
    no connection yet is `queuedOnly` (its row reads "Waiting", not "Uploading ·
    0%"), and when a slot frees, the smaller file's request goes before the
    bigger one's, whatever the order they were queued in."""
    page.goto(PAGE)
    result = page.evaluate(
        """async (base) => {
            const { RequestQueue } = await import(base + "/upload-queue.js");
            const { FileUpload } = await import(base + "/upload-machine.js");
            const queue = new RequestQueue(1);
            let release;
            queue.run(() => new Promise((resolve) => (release = resolve)));
            const order = [];
            const big = queue.run(async () => order.push("big"), undefined, 40e6);
            const small = queue.run(async () => order.push("small"), undefined, 3000);
            const upload = new FileUpload(new File([new Uint8Array(3000)], "small.bin"), { queue, threshold: 1e9 });
            upload.status = "uploading";
            const sent = upload.toBucket(async () => ({ method: "PUT", url: "data:,", body: "" })).catch(() => {});
            await new Promise((resolve) => setTimeout(resolve, 0)); // the blocker has its slot
            const waiting = upload.queuedOnly;
            release();
            await Promise.all([big, small]);
            return { order, waiting };
        }""",
        STATIC,
    )
    assert result == {"order": ["small", "big"], "waiting": True}


def test_speeds_countdowns_and_totals_read_honestly(page):
    page.goto(PAGE)
    result = page.evaluate(
        """async (base) => {
            const display = await import(base + "/progress-display.js");
            const scheduler = await import(base + "/upload-scheduler.js");
            let now = 0;
            const meter = new display.SpeedMeter(5000, () => now);
            meter.add(0); now = 1000; meter.add(1000);
            const moving = meter.rate();
            now = 4000; meter.add(1000);  // nothing moved for 3 s
            const idle = meter.rate();
            const countdown = [5000, 3500, 200].map((left) => display.waitingText({reason: "Connection lost", until: 10000 + left}, 10000));
            const offline = display.waitingText({reason: "Waiting for the network", until: null});
            // A big file cancelled at 16% beside a small one waiting: the total must not go back.
            const file = (size) => ({ size });
            const big = { file: file(1000), loaded: 160, sentHere: 160, status: "uploading", settled: false };
            const small = { file: file(40), loaded: 0, sentHere: 0, status: "uploading", settled: false };
            const before = scheduler.totals([big, small]).fraction;
            big.status = "cancelled"; big.settled = true;
            const after = scheduler.totals([big, small]).fraction;
            // Reused parts from an earlier visit are not sent in this page.
            const resumed = { file: file(100), loaded: 90, sentHere: 10, status: "uploading", settled: false };
            return { moving, idle, countdown, offline, before, after, bytes: display.formatBytes(11.051944137448064),
                     sent: scheduler.totals([resumed]).sent };
        }""",
        STATIC,
    )
    assert result["moving"] == 1000
    assert result["idle"] == 0
    assert result["countdown"] == [
        "Connection lost; retrying in 5 s",
        "Connection lost; retrying in 4 s",
        "Connection lost; retrying in 1 s",
    ]
    assert result["offline"] == "Waiting for the network"
    assert result["after"] >= result["before"]
    assert result["bytes"] == "11 B"
    assert result["sent"] == 10


def test_a_resumed_upload_counts_only_what_this_page_sends(page, tmp_path):
    page.goto(PAGE)
    sent_here = page.evaluate(
        """async (base) => {
            const { FileUpload } = await import(base + "/upload-machine.js");
            const upload = new FileUpload(new File([new Uint8Array(100)], "a.bin"), { threshold: 10 });
            upload.sentBytes = 90; upload.resumedBytes = 80; upload.inFlight.set(9, 5);
            return upload.sentHere;
        }""",
        STATIC,
    )
    assert sent_here == 15
