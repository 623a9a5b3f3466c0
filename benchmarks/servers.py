"""Loopback STUN servers for the benchmarks: ours in its own process, and coturn.

Both listen on 127.0.0.1 only and are stopped when their ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import subprocess
import sys
from collections.abc import Iterator

from stun.uri import split_host_port
from tests.coturn import Coturn, turnserver_path

Address = tuple[str, int]

READY_TIMEOUT = 10.0
"""Seconds our server may take to say where it listens."""
COTURN_MISSING = "coturn is not installed (no turnserver on PATH)"


@contextlib.contextmanager
def our_server() -> Iterator[Address]:
    """``python -m stun serve`` on a free loopback UDP port, in its own process (so that
    the server's work is not on the measuring event loop)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stun", "serve", "--bind", "127.0.0.1:0", "--json"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield _listening(process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _listening(process: subprocess.Popen[str]) -> Address:
    """The UDP address the server prints once it is ready."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(READY_TIMEOUT)
    line = process.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"our STUN server did not start within {READY_TIMEOUT} s")
    return split_host_port(json.loads(line)["listening"]["udp"][0], 0)


@contextlib.contextmanager
def coturn() -> Iterator[Address | None]:
    """coturn's UDP listener on loopback, or None when coturn is not installed."""
    if turnserver_path() is None:
        yield None
        return
    with Coturn() as server:
        yield server.address
