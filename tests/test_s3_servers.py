"""The S3 servers the suite starts listen on loopback only.

LocalStack's gateway binds 0.0.0.0 whatever GATEWAY_LISTEN says;
scripts/localstack_s3.py makes it bind 127.0.0.1. This reads the kernel's
table of listening sockets, as `ss -ltn` does.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on this TCP port (IPv4 and IPv6)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) != port or fields[3] != LISTEN:
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = struct.unpack(f"<{len(raw) // 4}I", raw)
            found.add(socket.inet_ntop(family, struct.pack(f">{len(words)}I", *words)))
    return found


def test_the_runs_s3_server_listens_on_loopback_only(s3_server):
    assert listening_addresses(s3_server.port) == {"127.0.0.1"}
