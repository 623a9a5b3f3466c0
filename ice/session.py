"""What ``ice connect`` says over its :class:`~ice.channel.Channel`: a line chat, or a file.

Message kinds::

    T  chat: a piece of the UTF-8 stream of lines (a line may span messages)
    F  file data, in order
    E  the end of the file: its length (u64) and SHA-256 (32 bytes)
    R  the receiver's receipt: length and SHA-256 of what it received
    B  bye: this side is leaving; the payload, if any, says why

The channel already delivers in order and exactly once; the length and SHA-256 check
the whole path end to end anyway. The receiver writes ``FILE.part`` and renames it to
``FILE`` only when both match; the sender succeeds only on a matching receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from .channel import Channel
from .errors import IceError
from .reliable import MAX_PAYLOAD
from .stdio import Lines

TEXT, FILE, END, RECEIPT, BYE = (ord(kind) for kind in "TFERB")
RECEIPT_WAIT = 2.0
"""Seconds the receiver waits for its receipt to be acknowledged before it leaves (the
file is complete and checked by then; only the sender's confirmation is at stake)."""

_SUMMARY = struct.Struct("!Q32s")
_NAMES = {TEXT: "chat text", FILE: "file data", END: "an end of file", RECEIPT: "a receipt"}


class SessionError(IceError):
    """The peer left, or did something this side does not go along with."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """A file sent or received and checked."""

    path: str
    size: int
    sha256: str
    seconds: float


async def chat(channel: Channel, lines: Lines, show: Callable[[str], None]) -> str | None:
    """Send our lines and ``show`` the peer's until one side leaves: None when we did
    (end of our input, every line acknowledged), else the reason the peer gave ("" for
    none)."""
    speaking = asyncio.ensure_future(_speak(channel, lines))
    listening = asyncio.ensure_future(_listen(channel, show))
    try:
        done, _ = await asyncio.wait((speaking, listening), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (speaking, listening):
            task.cancel()
        await asyncio.gather(speaking, listening, return_exceptions=True)
    if speaking in done:
        speaking.result()
        return None
    return listening.result()


async def _speak(channel: Channel, lines: Lines) -> None:
    while (line := await lines.readline()) is not None:
        for start in range(0, len(line), MAX_PAYLOAD):
            await channel.send(TEXT, line[start : start + MAX_PAYLOAD])
    await channel.send(BYE, b"")
    await channel.settle()


async def _listen(channel: Channel, show: Callable[[str], None]) -> str:
    pending = b""
    while True:
        kind, payload = await channel.receive()
        if kind == BYE:
            if pending:
                show(pending.decode("utf-8", "replace"))
            return payload.decode("utf-8", "replace")
        if kind != TEXT:
            raise SessionError(_unexpected(kind))
        *complete, pending = (pending + payload).split(b"\n")
        for line in complete:
            show(line.decode("utf-8", "replace"))


async def send_file(channel: Channel, path: str) -> Transfer:
    """Send the file at ``path``; return once the peer confirmed it intact."""
    digest = hashlib.sha256()
    size = 0
    began = time.monotonic()
    with open(path, "rb") as source:
        while chunk := source.read(MAX_PAYLOAD):
            await channel.send(FILE, chunk)
            digest.update(chunk)
            size += len(chunk)
    ours = _SUMMARY.pack(size, digest.digest())
    await channel.send(END, ours)
    while True:
        kind, payload = await channel.receive()
        if kind == RECEIPT:
            break
        if kind == BYE:
            raise SessionError(_left(payload, "before confirming the file"))
        raise SessionError(_unexpected(kind))
    if payload != ours:
        raise SessionError(f"the peer received {_describe(payload)}, not {_describe(ours)}")
    return Transfer(path, size, digest.hexdigest(), time.monotonic() - began)


async def receive_file(channel: Channel, path: str) -> Transfer:
    """Receive one file into ``path`` (via ``path.part``); SessionError, and no file,
    unless its length and SHA-256 match what the sender announced."""
    part = f"{path}.part"
    try:
        size, digest, theirs, began = await _receive_into(channel, part)
        ours = _SUMMARY.pack(size, bytes.fromhex(digest))
        await channel.send(RECEIPT, ours)
        if theirs != ours:
            raise SessionError(
                f"received {_describe(ours)} but the sender sent {_describe(theirs)}: "
                "the file is not written"
            )
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
        raise
    transfer = Transfer(path, size, digest, time.monotonic() - began)
    await channel.settle(RECEIPT_WAIT)
    return transfer


async def _receive_into(channel: Channel, part: str) -> tuple[int, str, bytes, float]:
    """Write file data to ``part`` until the end: (size, SHA-256 in hex, the sender's
    summary, when the first message came)."""
    digest = hashlib.sha256()
    size = 0
    began: float | None = None
    with open(part, "wb") as sink:
        while True:
            kind, payload = await channel.receive()
            if began is None:
                began = time.monotonic()
            if kind == FILE:
                sink.write(payload)
                digest.update(payload)
                size += len(payload)
            elif kind == END:
                return size, digest.hexdigest(), payload, began
            elif kind == BYE:
                raise SessionError(_left(payload, "before the end of the file"))
            else:
                raise SessionError(_unexpected(kind))


def _describe(summary: bytes) -> str:
    try:
        size, digest = _SUMMARY.unpack(summary)
    except struct.error:
        return "a malformed summary"
    return f"{size} bytes with SHA-256 {digest.hex()[:16]}..."


def _left(reason: bytes, when: str) -> str:
    why = reason.decode("utf-8", "replace")
    return f"the peer left {when}" + (f": {why}" if why else "")


def _unexpected(kind: int) -> str:
    return f"the peer sent {_NAMES.get(kind, f'a message of kind {kind}')} out of turn"
