"""The lean UDP endpoint: batched reads, direct writes, a bounded backlog, ICMP errors."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from stun.attributes import Address
from stun.datagram import (
    READ_BATCH,
    WRITE_BACKLOG,
    DatagramSocket,
    IcmpError,
    open_datagram_socket,
)
from tests.ports import dead_port


class Inbox:
    def __init__(self, expected: int) -> None:
        self.items: list[tuple[bytes, Address]] = []
        self.errors: list[OSError] = []
        self.expected = expected
        self.done = asyncio.get_running_loop().create_future()

    def datagram(self, data: bytes, source: Address) -> None:
        self.items.append((data, source))
        if len(self.items) >= self.expected and not self.done.done():
            self.done.set_result(None)

    def error(self, exc: OSError) -> None:
        self.errors.append(exc)
        if not self.done.done():
            self.done.set_result(None)


async def test_datagrams_both_ways_connected_and_not() -> None:
    inbox_a, inbox_b = Inbox(3), Inbox(3)
    a = await open_datagram_socket(inbox_a.datagram, inbox_a.error, local_address=("127.0.0.1", 0))
    b = await open_datagram_socket(inbox_b.datagram, inbox_b.error, remote_address=a.local_address)
    try:
        for i in range(3):
            b.send(b"to a %d" % i)
        await asyncio.wait_for(inbox_a.done, 2)
        assert [data for data, _ in inbox_a.items] == [b"to a 0", b"to a 1", b"to a 2"]
        assert {source for _, source in inbox_a.items} == {b.local_address}
        for i in range(3):
            a.sendto(b"to b %d" % i, b.local_address)
        await asyncio.wait_for(inbox_b.done, 2)
        assert [data for data, _ in inbox_b.items] == [b"to b 0", b"to b 1", b"to b 2"]
        assert {source for _, source in inbox_b.items} == {a.local_address}  # the peer
    finally:
        a.close()
        b.close()
    assert a.is_closing() and b.is_closing()


async def test_a_burst_is_read_in_batches_without_loss() -> None:
    count = READ_BATCH * 3 + 5
    inbox = Inbox(count)
    receiver = await open_datagram_socket(
        inbox.datagram, inbox.error, local_address=("127.0.0.1", 0)
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for i in range(count):
            sender.sendto(i.to_bytes(2, "big"), receiver.local_address)
        try:
            await asyncio.wait_for(inbox.done, 2)
        finally:
            receiver.close()
    assert [int.from_bytes(data, "big") for data, _ in inbox.items] == list(range(count))


async def test_port_unreachable_is_reported_on_a_connected_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    inbox = Inbox(1)
    sock = await open_datagram_socket(
        inbox.datagram, inbox.error, remote_address=("127.0.0.1", port)
    )
    try:
        sock.send(b"anyone?")
        await asyncio.wait_for(inbox.done, 2)
    finally:
        sock.close()
    assert isinstance(inbox.errors[0], ConnectionRefusedError)


async def test_unreachable_hears_icmp_errors_and_sends_the_kernel_refuses() -> None:
    """With ``on_unreachable``, an ICMP port unreachable comes back as an IcmpError
    naming the destination and the payload; a datagram the kernel refuses to send at
    all (UDP to port 0: EINVAL) is reported the same way, as a plain OSError, and
    ``on_error`` hears neither."""
    inbox = Inbox(1)
    unreachable: list[tuple[Address, bytes, OSError]] = []
    heard = asyncio.get_running_loop().create_future()

    def on_unreachable(destination: Address, payload: bytes, error: OSError) -> None:
        unreachable.append((destination, payload, error))
        if not heard.done():
            heard.set_result(None)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind(("127.0.0.1", 0))
        sock = DatagramSocket(raw, inbox.datagram, inbox.error, on_unreachable=on_unreachable)
        try:
            sock.sendto(b"to port 0", ("127.0.0.1", 0))
            assert len(unreachable) == 1  # at once, from sendto itself
            closed = ("127.0.0.1", dead_port())
            sock.sendto(b"to a closed port", closed)
            heard = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(heard, 2)
        finally:
            sock.close()
    refused_locally, icmp = unreachable
    assert refused_locally[:2] == (("127.0.0.1", 0), b"to port 0")
    assert not isinstance(refused_locally[2], IcmpError)
    assert refused_locally[2].errno == errno.EINVAL
    assert icmp[:2] == (closed, b"to a closed port")
    assert isinstance(icmp[2], IcmpError) and icmp[2].errno == errno.ECONNREFUSED
    assert inbox.errors == []


async def test_a_full_send_buffer_queues_then_drains_in_order() -> None:
    # A Unix datagram socket pair pushes back (EAGAIN) when the reader falls behind,
    # which a loopback UDP socket never does.
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    right.setblocking(False)
    inbox = Inbox(0)
    sock = DatagramSocket(left, inbox.datagram, inbox.error, remote=("peer", 0))
    size = 1000
    count = WRITE_BACKLOG // size + 500  # more than the kernel and the backlog hold
    try:
        for i in range(count):
            sock.send(i.to_bytes(4, "big") * (size // 4))
        assert sock.dropped_writes > 0
        received: list[int] = []
        deadline = asyncio.get_running_loop().time() + 5
        while asyncio.get_running_loop().time() < deadline:
            try:
                received.append(int.from_bytes(right.recv(size)[:4], "big"))
            except BlockingIOError:
                if received and received[-1] == count - 1 - sock.dropped_writes:
                    break
                await asyncio.sleep(0)  # let the writer refill the socket
        assert received == list(range(count - sock.dropped_writes))
    finally:
        sock.close()
        right.close()


async def test_close_is_idempotent_and_drops_the_backlog() -> None:
    inbox = Inbox(1)
    sock = await open_datagram_socket(inbox.datagram, inbox.error, local_address=("127.0.0.1", 0))
    sock.close()
    sock.close()
    sock.sendto(b"late", ("127.0.0.1", 9))
    assert sock.is_closing()
    assert inbox.errors == []


@pytest.mark.parametrize("name", ["sockname", "peername", "socket"])
async def test_extra_info_like_a_transport(name: str) -> None:
    inbox = Inbox(1)
    sock = await open_datagram_socket(inbox.datagram, inbox.error, remote_address=("127.0.0.1", 9))
    try:
        assert sock.get_extra_info(name) is not None
        assert sock.get_extra_info("nonsense", 42) == 42
    finally:
        sock.close()
