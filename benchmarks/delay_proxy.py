"""A TCP proxy that adds round-trip time: every chunk waits half the RTT each way.

    python -m benchmarks.delay_proxy --rtt-ms 40 --pair 18001:8001 --pair 18002:9000

This kernel has no `netem`, so benchmarks/link.py puts this in front of
Datasette and the S3 server: `--pair LISTEN:TARGET` listens on 127.0.0.1:LISTEN
and forwards to 127.0.0.1:TARGET. Each direction reads as fast as the (shaped)
socket allows and sends every chunk on once its deadline has passed, so the
delay adds latency without capping throughput. A bounded queue per direction
pushes back on the sender when the far side is slower, as a full link would.

What it does not model: TCP's own window and slow start over the delay (the
proxy terminates TCP), so a single connection here ramps up faster than over a
real 40 ms path. Request/response round trips, which decide small files, pay
the full RTT.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

CHUNK = 64 * 1024
# Chunks in flight per direction: 64 MiB at most, above 1 Gbit/s x 100 ms.
QUEUE_CHUNKS = 1024


METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ")


def trace(label: str, chunk: bytes) -> None:
    """With --trace, the time and first line of every request a chunk starts (to stderr)."""
    if chunk.startswith(METHODS):
        line = chunk.split(b"\r\n", 1)[0].decode(errors="replace")[:120]
        print(f"{time.monotonic():.3f} {label} {line}", file=sys.stderr, flush=True)


async def pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, label: str | None = None
) -> None:
    """Copy reader to writer, each chunk `delay` seconds after it was read."""
    queue: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)

    async def read() -> None:
        while chunk := await reader.read(CHUNK):
            if label:
                trace(label, chunk)
            await queue.put((time.monotonic() + delay, chunk))
        await queue.put((time.monotonic() + delay, b""))

    reading = asyncio.ensure_future(read())
    try:
        while True:
            due, chunk = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                break
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        reading.cancel()


async def serve_pair(listen: int, target: int, delay: float, traced: bool) -> asyncio.AbstractServer:
    async def handle(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(
                pipe(client_reader, upstream_writer, delay, f":{listen}" if traced else None),
                pipe(upstream_reader, client_writer, delay),
            )
        finally:
            for writer in (client_writer, upstream_writer):
                writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", listen, backlog=1024)


async def main_async(pairs: list[tuple[int, int]], rtt_ms: float, traced: bool) -> None:
    servers = [await serve_pair(listen, target, rtt_ms / 2000, traced) for listen, target in pairs]
    print("ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rtt-ms", type=float, required=True, help="round-trip time to add, in ms")
    parser.add_argument(
        "--pair", action="append", required=True, help="LISTEN:TARGET, two ports on 127.0.0.1"
    )
    parser.add_argument("--trace", action="store_true", help="print each request's time and first line")
    args = parser.parse_args(argv)
    pairs = [tuple(int(p) for p in pair.split(":")) for pair in args.pair]
    try:
        asyncio.run(main_async(pairs, args.rtt_ms, args.trace))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
