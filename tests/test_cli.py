"""The command line's process: how it ends."""

from __future__ import annotations

import subprocess
import sys
import time


def test_a_task_that_ignores_its_cancel_does_not_keep_the_process_after_stopping() -> None:
    """``run_bounded``: once the server's main coroutine ended, the tasks left get
    ``cleanup_s`` to end; one that ignores its cancellation does not keep a
    half-stopped process alive (a supervisor restarts a process that exits)."""
    script = """
import asyncio
from gpsd_server.cli import run_bounded

async def stubborn():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue

async def main():
    asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0.05)
    raise RuntimeError("the server failed")

run_bounded(main(), cleanup_s=1.0)
"""
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 70, done.stderr
    assert "tasks still running 1 s after stopping; exiting" in done.stderr
    assert time.monotonic() - t0 < 10
    # A main that ends and leaves nothing behind exits normally, at once.
    ok = subprocess.run(
        [sys.executable, "-c", "import asyncio\nfrom gpsd_server.cli import run_bounded\n"
         "run_bounded(asyncio.sleep(0), cleanup_s=30)"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
