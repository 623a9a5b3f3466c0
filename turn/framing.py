"""TURN ChannelData messages (RFC 8656 section 12.4) and channel numbers.

A ChannelData message is a 2-byte channel number, a 2-byte length and the application
data. Over TCP and TLS it is padded to a multiple of 4 bytes (the padding is not counted
in the length); over UDP it need not be.
"""

from __future__ import annotations

import struct

FIRST_CHANNEL = 0x4000
"""The lowest channel number a client may bind (RFC 8656 section 12)."""
LAST_CHANNEL = 0x4FFF
"""The highest channel number a client may bind. RFC 5766 allowed up to 0x7FFE; RFC 8656
narrowed the range, and a client sticking to it works with servers of either RFC."""
MAX_DATA = 0xFFFF
"""The most application bytes one ChannelData message (or Send indication) can carry."""

MAX_UDP_DATA = 65507 - 48
"""The most application bytes relayed in one UDP datagram: an IPv4 UDP payload (65507)
less the larger of the two framings, a Send indication to an IPv6 peer (48 bytes)."""

HEADER = struct.Struct("!HH")
PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")
"""The zero bytes that pad ``n`` bytes of data to a multiple of 4: ``PADDING[n & 3]``."""


def is_channel_number(number: int) -> bool:
    """Whether ``number`` is in the RFC 8656 channel range 0x4000-0x4FFF."""
    return FIRST_CHANNEL <= number <= LAST_CHANNEL


def encode_channel_data(number: int, data: bytes, *, padded: bool = False) -> bytes:
    """A ChannelData message; ``padded`` for a stream (TCP, TLS) transport."""
    if not is_channel_number(number):
        raise ValueError(f"channel number 0x{number:04x} is outside 0x4000-0x4FFF")
    size = len(data)
    if size > MAX_DATA:
        raise ValueError(f"{size} bytes do not fit in one ChannelData message")
    message = HEADER.pack(number, size) + data
    return message + PADDING[size & 3] if padded else message


def decode_channel_data(message: bytes) -> tuple[int, bytes] | None:
    """``(channel number, data)`` of a ChannelData message, or None if it is not one.

    Trailing padding (up to 3 bytes) is allowed on any transport.
    """
    if len(message) < 4 or not 0x40 <= message[0] <= 0x4F:
        return None
    number, size = HEADER.unpack_from(message)
    if not 0 <= len(message) - 4 - size <= 3:
        return None
    return number, message[4 : 4 + size]
