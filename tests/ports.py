"""UDP ports on 127.0.0.1 for tests that need a server that is not there or never answers."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

LOOPBACK = "127.0.0.1"


def dead_port() -> int:
    """A UDP port on 127.0.0.1 that nothing listens on (bound, then closed): a datagram
    to it draws an ICMP port unreachable."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A UDP port on 127.0.0.1 that takes datagrams and never answers (nor draws ICMP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        yield sock.getsockname()[1]
