"""The layout of TURN ChannelData messages (RFC 8656 section 12.4) and channel numbers.

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
