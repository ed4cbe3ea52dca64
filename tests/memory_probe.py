"""Stream files through `S3Storage.receive_upload` and print each one's peak
traced memory, as JSON `{"<MiB>": peak_bytes}`.

test_storage.py runs this as a child process, so the peak counts only what
these uploads allocate: nothing that other tests left behind (garbage, threads,
servers) in the test process can be traced with it. Reads the source config as
JSON on stdin; the sizes in MiB are the arguments.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tracemalloc

from helpers import async_chunks

from datasette_files_s3.storage import S3Storage

MIB = 1024**2


async def main(config: dict, sizes: list[int]) -> dict:
    storage = S3Storage()
    await storage.configure(config)
    # Warm boto3 up first: loading its service models is a one-off cost, not the upload's.
    await storage.receive_upload("m/warm.bin", async_chunks(9 * MIB), "application/octet-stream")
    peaks = {}
    for mib in sizes:
        tracemalloc.start()
        await storage.receive_upload(f"m/{mib}.bin", async_chunks(mib * MIB), "application/octet-stream")
        peaks[mib] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peaks


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.load(sys.stdin), [int(s) for s in sys.argv[1:]]))))
