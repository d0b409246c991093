"""A 0x7e flooder for the gateway fault tests, run as its own process so the
flood does not share the event loop being measured.

    python tests/gateway/flood.py HOST PORT SECONDS CONNECTIONS

Each connection writes 64 KiB of 0x7e at a time as fast as the socket takes
it and reconnects whenever the gateway hangs up. Prints one JSON line:
bytes written and connections opened.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

CHUNK = b"\x7e" * 65536


def flood(host: str, port: int, until: float, stats: dict[str, int], lock: threading.Lock) -> None:
    while time.monotonic() < until:
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                with lock:
                    stats["connections"] += 1
                while time.monotonic() < until:
                    sock.sendall(CHUNK)
                    with lock:
                        stats["bytes"] += len(CHUNK)
        except OSError:
            with lock:
                stats["closed"] += 1
            time.sleep(0.01)


def main() -> None:
    host, port, seconds, connections = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    until = time.monotonic() + seconds
    stats = {"bytes": 0, "connections": 0, "closed": 0}
    lock = threading.Lock()
    threads = [threading.Thread(target=flood, args=(host, port, until, stats, lock)) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
