"""A UDP server on loopback, in a thread, that answers each datagram with what a
function makes of it: an echo, a canned error response, ..."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

Address = tuple[str, int]


@contextlib.contextmanager
def udp_responder(answer: Callable[[bytes], bytes | None]) -> Iterator[Address]:
    """Serve on 127.0.0.1 (any port) until the block ends: every datagram gets
    ``answer(data)`` back, unless that is None. Yields the server's address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            reply = answer(data)
            if reply is not None:
                sock.sendto(reply, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        host, port = sock.getsockname()
        yield str(host), int(port)
    finally:
        stop.set()
        thread.join()
        sock.close()
