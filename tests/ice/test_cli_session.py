"""What ``ice connect`` says over its channel, between two connections on loopback in one
process: a file that does not match what its sender announced is reported and never
written, a peer that leaves or says the wrong thing is named, a silent peer is given up on."""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ice.candidate import Candidate
from ice.channel import Channel
from ice.connection import Connection
from ice.errors import IceError
from ice.interfaces import HostAddress
from ice.reliable import Reliable
from ice.session import BYE, END, FILE, RECEIPT, TEXT, SessionError, receive_file, send_file

WAIT = 10.0
SUMMARY = struct.Struct("!Q32s")


def _summary(data: bytes) -> bytes:
    return SUMMARY.pack(len(data), hashlib.sha256(data).digest())


def _loopback(address: HostAddress) -> bool:
    return address.ip == "127.0.0.1"


@pytest.fixture
async def connections() -> AsyncIterator[tuple[Connection, Connection]]:
    """Two connected connections on 127.0.0.1."""
    options: dict[str, Any] = {"include_loopback": True, "address_filter": _loopback}
    left, right = Connection(True, **options), Connection(False, **options)
    candidates = await asyncio.gather(left.gather_all(), right.gather_all())
    for mine, theirs, peer in ((left, candidates[1], right), (right, candidates[0], left)):
        mine.set_remote_credentials(peer.local_ufrag, peer.local_pwd)
        for candidate in theirs:
            mine.add_remote_candidate(Candidate.from_sdp(candidate.to_sdp()))
        mine.add_remote_candidate(None)
    await asyncio.wait_for(asyncio.gather(left.connect(), right.connect()), WAIT)
    yield left, right
    await asyncio.gather(left.close(), right.close())


@pytest.fixture
async def channels(
    connections: tuple[Connection, Connection],
) -> AsyncIterator[tuple[Channel, Channel]]:
    """A channel on each of two connected connections."""
    sender, receiver = (Channel(conn, Reliable()) for conn in connections)
    yield sender, receiver
    await asyncio.gather(sender.close(), receiver.close())


async def test_a_file_unlike_the_announced_one_is_reported_and_not_written(
    channels: tuple[Channel, Channel], tmp_path: Path
) -> None:
    sender, receiver = channels
    target = tmp_path / "copy.bin"
    await sender.send(FILE, b"abc")
    await sender.send(END, _summary(b"abcd"))
    with pytest.raises(SessionError) as failure:
        await asyncio.wait_for(receive_file(receiver, str(target)), WAIT)
    assert str(failure.value) == (
        "received 3 bytes with SHA-256 ba7816bf8f01cfea... but the sender sent 4 bytes "
        "with SHA-256 88d4266fd4e6338d...: the file is not written"
    )
    assert list(tmp_path.iterdir()) == []
    assert await asyncio.wait_for(sender.receive(), WAIT) == (RECEIPT, _summary(b"abc"))


async def test_the_sender_fails_on_a_receipt_that_does_not_match(
    channels: tuple[Channel, Channel], tmp_path: Path
) -> None:
    sender, receiver = channels
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3000)
    sending = asyncio.create_task(send_file(sender, str(source)))
    while (await asyncio.wait_for(receiver.receive(), WAIT))[0] != END:
        pass
    await receiver.send(RECEIPT, _summary(b"x" * 2999))
    with pytest.raises(SessionError, match=r"the peer received 2999 bytes .*, not 3000 bytes"):
        await asyncio.wait_for(sending, WAIT)


async def test_a_sender_that_leaves_midway_leaves_no_file(
    channels: tuple[Channel, Channel], tmp_path: Path
) -> None:
    sender, receiver = channels
    await sender.send(FILE, b"part of it")
    await sender.send(BYE, b"interrupted")
    with pytest.raises(SessionError, match="the peer left before the end of the file: interrupted"):
        await asyncio.wait_for(receive_file(receiver, str(tmp_path / "copy.bin")), WAIT)
    assert list(tmp_path.iterdir()) == []


async def test_a_message_out_of_turn_is_named(
    channels: tuple[Channel, Channel], tmp_path: Path
) -> None:
    sender, receiver = channels
    await sender.send(TEXT, b"hello\n")
    with pytest.raises(SessionError, match="the peer sent chat text out of turn"):
        await asyncio.wait_for(receive_file(receiver, str(tmp_path / "copy.bin")), WAIT)


async def test_a_peer_that_stops_acknowledging_is_given_up_on(
    connections: tuple[Connection, Connection],
) -> None:
    left, right = connections
    talker, listener = Channel(left, Reliable(give_up=0.3)), Channel(right, Reliable())
    try:
        await talker.send(TEXT, b"first\n")
        assert await asyncio.wait_for(talker.settle(), WAIT)
        await listener.close()
        await talker.send(TEXT, b"anyone?\n")
        with pytest.raises(IceError, match=r"the peer stopped answering \(nothing acknowledged"):
            await asyncio.wait_for(talker.settle(), WAIT)
    finally:
        await talker.close()


async def test_a_peer_whose_side_never_starts_is_given_up_on(
    connections: tuple[Connection, Connection],
) -> None:
    talker = Channel(connections[0], Reliable(contact_timeout=0.3))
    try:
        with pytest.raises(IceError, match=r"nothing came from the peer's side within 0\.3 s"):
            await asyncio.wait_for(talker.settle(), WAIT)
    finally:
        await talker.close()
