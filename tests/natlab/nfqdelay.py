"""Delay every packet of an NFQUEUE queue by a fixed time: netem's delay, for a kernel
without netem. ``python -m tests.natlab.nfqdelay --queue 0 --delay 0.1`` (as root, in the
namespace whose iptables rules send packets to ``-j NFQUEUE --queue-num 0``).

It speaks nfnetlink_queue directly over a netlink socket: bind the queue in metadata
mode (no payload copied), then hand each packet's id back with an ACCEPT verdict
``delay`` seconds after it arrived. Verdicts go out in arrival order, so packets keep
their order. It prints ``ready`` once bound and stops on SIGTERM, when its parent
exits, or after ``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import errno
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
PR_SET_PDEATHSIG = 1

_HEADER = struct.Struct("=IHHII")


def _attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(kind: int, queue: int, attributes: bytes, seq: int, flags: int) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attributes
    header = _HEADER.pack(_HEADER.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0)
    return header + body


def _messages(data: bytes) -> list[tuple[int, bytes]]:
    """Split a netlink datagram into (type, payload) messages."""
    out = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        out.append((kind, data[offset + _HEADER.size : offset + length]))
        offset += (length + 3) & ~3
    return out


def _packet_id(payload: bytes) -> int | None:
    """The packet id of an NFQNL_MSG_PACKET payload (after its 4-byte nfgenmsg)."""
    offset = 4
    while offset + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, offset)
        if length < 4:
            return None
        if kind & 0x7FFF == NFQA_PACKET_HDR:
            return int(struct.unpack_from("!I", payload, offset + 4)[0])
        offset += (length + 3) & ~3
    return None


def bind(queue: int) -> socket.socket:
    """A netlink socket bound to ``queue`` in metadata mode; raises OSError if refused."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, 0))
    config = [
        _attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET)),
        _attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
    ]
    for seq, attribute in enumerate(config, 1):
        sock.send(_message(NFQNL_MSG_CONFIG, queue, attribute, seq, NLM_F_REQUEST | NLM_F_ACK))
        for kind, payload in _messages(sock.recv(65536)):
            code = struct.unpack_from("=i", payload)[0] if kind == NLMSG_ERROR else 0
            if code:
                sock.close()
                raise OSError(-code, f"NFQUEUE config refused: {errno.errorcode.get(-code)}")
    return sock


def serve(sock: socket.socket, queue: int, delay: float, lifetime: float) -> int:
    """Hold each queued packet ``delay`` seconds, then accept it; return how many
    packets were delayed. Ends after ``lifetime`` seconds."""
    pending: collections.deque[tuple[float, int]] = collections.deque()
    end = time.monotonic() + lifetime
    count = 0
    while True:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, packet = pending.popleft()
            verdict = _attribute(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet))
            sock.send(_message(NFQNL_MSG_VERDICT, queue, verdict, 0, NLM_F_REQUEST))
        if now >= end:
            return count
        wait = min(end, pending[0][0]) - now if pending else end - now
        readable, _, _ = select.select([sock], [], [], max(0.0, wait))
        if not readable:
            continue
        try:
            data = sock.recv(65536)
        except OSError as exc:  # ENOBUFS: the kernel dropped some; they count as loss
            if exc.errno == errno.ENOBUFS:
                continue
            raise
        arrived = time.monotonic()
        for kind, payload in _messages(data):
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                packet_id = _packet_id(payload)
                if packet_id is not None:
                    pending.append((arrived + delay, packet_id))
                    count += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nfqdelay", description=__doc__.split("\n")[0])
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay", type=float, required=True, help="seconds")
    parser.add_argument("--lifetime", type=float, default=600.0, help="stop after this long")
    args = parser.parse_args(argv)
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with bind(args.queue) as sock:
        print("ready", flush=True)
        serve(sock, args.queue, args.delay, args.lifetime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
