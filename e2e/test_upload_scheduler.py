"""How many files upload at once (static/upload-scheduler.js), in the browser.

Small files wait on round trips, not bytes, so more of them go at once; big
files keep the default. The uploads here are stand-ins that only record that
they started: what is under test is the scheduler's choice, not the network."""

from __future__ import annotations

import pytest

from e2e.page_helpers import MIB, PAGE

KIB = 1024

STARTED = """async ({ sizes, parallel, smallParallel }) => {
  const { UploadScheduler } = await import("/-/static-plugins/datasette_files_s3/upload-scheduler.js");
  const createUpload = (file) => ({
    file,
    status: "pending",
    // Never settles: each upload stays in flight, as on a slow link.
    start() { this.status = "uploading"; return new Promise(() => {}); },
  });
  const options = { createUpload };
  if (parallel) options.parallel = parallel;
  if (smallParallel) options.smallParallel = smallParallel;
  const scheduler = new UploadScheduler(options);
  scheduler.add(sizes.map((size, n) => ({ name: `f${n}`, size })));
  return scheduler.uploads.filter((u) => u.status === "uploading").map((u) => u.file.name);
}"""


@pytest.mark.parametrize(
    "sizes, options, started",
    [
        ([4 * KIB] * 40, {}, 32),
        ([256 * KIB] * 40, {}, 32),
        ([2 * MIB] * 20, {}, 3),
        # In order: a big file in flight keeps the default for the files after it.
        ([2 * MIB] + [4 * KIB] * 20, {}, 3),
        # An explicit parallel-files holds for small files too (the element passes it as both).
        ([4 * KIB] * 20, {"parallel": 2, "smallParallel": 2}, 2),
    ],
    ids=["tiny", "256-kib", "big", "big-first", "explicit"],
)
def test_small_files_upload_more_at_once(page, sizes, options, started):
    page.goto(PAGE)
    names = page.evaluate(STARTED, {"sizes": sizes, "parallel": 0, "smallParallel": 0, **options})
    assert names == [f"f{n}" for n in range(started)]
