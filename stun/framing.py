"""Framing of STUN messages and TURN ChannelData on a byte stream (TCP, TLS).

A stream carries STUN messages back to back (each 20 header bytes plus its length field)
and, on a TURN connection, ChannelData messages (4 header bytes plus the data, padded to a
multiple of 4 on streams, RFC 8656 section 12.5). The first two bits of each frame tell
the two apart: 0b00 is STUN, 0b01 is ChannelData.
"""

from __future__ import annotations

from .errors import ParseError

MAX_FRAME = 0xFFFF + 20


def frame_length(buf: bytes | bytearray, start: int = 0) -> int | None:
    """The size of the frame starting at ``buf[start]``, or None while its header is incomplete.

    Raises :class:`ParseError` when the bytes cannot start a STUN or ChannelData frame.
    """
    if len(buf) - start < 4:
        return None
    first = buf[start] >> 6
    length = (buf[start + 2] << 8) | buf[start + 3]
    if first == 0:
        return 20 + length
    if first == 1:
        return 4 + ((length + 3) & ~3)
    raise ParseError(f"byte 0x{buf[start]:02x} cannot start a STUN or ChannelData frame")


class StreamFramer:
    """Cuts a byte stream into frames: feed bytes in, take whole frames out."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the frames they complete, in order.

        Raises :class:`ParseError` when the stream is corrupt; the stream cannot be
        resynchronised after that and should be closed.
        """
        buffer = self._buffer
        buffer += data
        frames = []
        start = 0
        while True:
            size = frame_length(buffer, start)
            if size is None or len(buffer) - start < size:
                break
            frames.append(bytes(buffer[start : start + size]))
            start += size
        if start:
            del buffer[:start]
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buffer)
