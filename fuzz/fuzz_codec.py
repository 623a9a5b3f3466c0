#!/usr/bin/env python3
"""A long-running fuzz target for the STUN message codec (not collected by pytest).

    python fuzz/fuzz_codec.py                      # 1,000,000 examples, random seed
    python fuzz/fuzz_codec.py --examples 50000 --seed 7
    python fuzz/fuzz_codec.py --seconds 600        # stop after ten minutes
    python fuzz/fuzz_codec.py --replay fuzz/crashes/<name>.bin

Each example is one of:

- round trip: a random valid message (random method, class, transaction id, attributes
  of every known type and unknown ones, optional MESSAGE-INTEGRITY(-SHA256) with a random
  key and FINGERPRINT) must decode to an equal message whose MAC and CRC match values
  recomputed here with :mod:`hmac` and :mod:`zlib`, and re-encode to the same bytes;
- robustness: random bytes, STUN-shaped bytes (a correct header and attribute layout around
  random values) or a valid message mutated by bit flips, byte sets, insertion, deletion,
  truncation and length patching must either decode or raise ``stun.ParseError``; a
  message that decodes must be readable in full (attributes, ``get`` of every type,
  integrity and fingerprint checks, ``unknown_required``, re-encoding) without any
  exception. The valid message is decoded just before its mutation, so that anything the
  decoder remembers between messages is exercised.

A failing input is printed, saved under ``--crash-dir`` and the run exits with status 1
(or goes on with ``--keep-going``). Runs are reproducible from ``--seed``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import random
import socket
import struct
import sys
import time
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stun
from stun import AddressError, Attr, Class, Icmp

TRAILERS = frozenset((Attr.MESSAGE_INTEGRITY, Attr.MESSAGE_INTEGRITY_SHA256, Attr.FINGERPRINT))
KNOWN = frozenset(int(a) for a in Attr)
UNKNOWN_TYPES = [t for t in range(0x10000) if t not in KNOWN]
FINGERPRINT_XOR = 0x5354554E
CHECK_KEY = b"fuzz check key"


class Failure(Exception):
    """An oracle was violated."""


FED: list[bytes] = []
"""What the current example handed to ``stun.decode``, for the crash report."""


def decode(data: bytes) -> stun.Message:
    FED.append(data)
    return stun.decode(data)


# -- random valid values ------------------------------------------------------------------------


def _text(rng: random.Random, limit: int = 40) -> str:
    kind = rng.random()
    n = rng.randint(0, limit)
    if kind < 0.5:
        return "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(n))
    if kind < 0.8:
        return "".join(chr(rng.randint(0x80, 0x7FF)) for _ in range(n))
    out = []
    for _ in range(n):
        c = rng.randint(0, 0x10FFFF)
        out.append(chr(c) if not 0xD800 <= c <= 0xDFFF else "x")
    return "".join(out)


def _bytes(rng: random.Random, lo: int = 0, hi: int = 64) -> bytes:
    return rng.randbytes(rng.randint(lo, hi))


def _address(rng: random.Random) -> tuple[str, int]:
    if rng.random() < 0.5:
        host = socket.inet_ntop(socket.AF_INET, rng.randbytes(4))
    else:
        host = socket.inet_ntop(socket.AF_INET6, rng.randbytes(16))
    return host, rng.randint(0, 0xFFFF)


def _u(bits: int) -> Callable[[random.Random], int]:
    def draw(rng: random.Random) -> int:
        return rng.choice((0, (1 << bits) - 1, rng.getrandbits(bits)))

    return draw


VALUES: dict[Attr, Callable[[random.Random], Any]] = {
    Attr.MAPPED_ADDRESS: _address,
    Attr.CHANGE_REQUEST: _u(32),
    Attr.USERNAME: _text,
    Attr.ERROR_CODE: lambda r: (r.randint(300, 699), _text(r)),
    Attr.UNKNOWN_ATTRIBUTES: lambda r: tuple(r.getrandbits(16) for _ in range(r.randint(0, 8))),
    Attr.CHANNEL_NUMBER: _u(16),
    Attr.LIFETIME: _u(32),
    Attr.XOR_PEER_ADDRESS: _address,
    Attr.DATA: _bytes,
    Attr.REALM: _text,
    Attr.NONCE: _text,
    Attr.XOR_RELAYED_ADDRESS: _address,
    Attr.REQUESTED_ADDRESS_FAMILY: _u(8),
    Attr.EVEN_PORT: lambda r: r.random() < 0.5,
    Attr.REQUESTED_TRANSPORT: _u(8),
    Attr.DONT_FRAGMENT: lambda r: True,
    Attr.PASSWORD_ALGORITHM: _u(16),
    Attr.USERHASH: lambda r: r.randbytes(32),
    Attr.XOR_MAPPED_ADDRESS: _address,
    Attr.RESERVATION_TOKEN: lambda r: r.randbytes(8),
    Attr.PRIORITY: _u(32),
    Attr.USE_CANDIDATE: lambda r: True,
    Attr.PADDING: _bytes,
    Attr.RESPONSE_PORT: _u(16),
    Attr.ADDITIONAL_ADDRESS_FAMILY: _u(8),
    Attr.ADDRESS_ERROR_CODE: lambda r: AddressError(
        r.getrandbits(8), r.randint(300, 699), _text(r)
    ),
    Attr.PASSWORD_ALGORITHMS: lambda r: tuple(r.getrandbits(16) for _ in range(r.randint(0, 6))),
    Attr.ALTERNATE_DOMAIN: _text,
    Attr.ICMP: lambda r: Icmp(r.getrandbits(8), r.getrandbits(8), r.getrandbits(32)),
    Attr.SOFTWARE: _text,
    Attr.ALTERNATE_SERVER: _address,
    Attr.ICE_CONTROLLED: _u(64),
    Attr.ICE_CONTROLLING: _u(64),
    Attr.RESPONSE_ORIGIN: _address,
    Attr.OTHER_ADDRESS: _address,
}
assert set(VALUES) | TRAILERS == set(Attr), "every attribute type needs a value generator"
VALUE_TYPES = sorted(VALUES)


def random_attributes(rng: random.Random, most: int = 10) -> list[tuple[int, Any]]:
    attrs: list[tuple[int, Any]] = []
    for _ in range(rng.randint(0, most)):
        if rng.random() < 0.85:
            attr = rng.choice(VALUE_TYPES)
            attrs.append((attr, VALUES[attr](rng)))
        else:
            attrs.append((rng.choice(UNKNOWN_TYPES), _bytes(rng, 0, 24)))
    return attrs


class Options:
    """How one message is encoded."""

    def __init__(self, rng: random.Random) -> None:
        self.integrity = rng.choice((None, "sha1", "sha256"))
        self.sha256_length = rng.choice((16, 20, 24, 28, 32))
        self.fingerprint = rng.random() < 0.5
        if rng.random() < 0.2:
            self.key = rng.randbytes(rng.randint(60, 160))
        else:
            self.key = rng.randbytes(rng.randint(0, 40))

    def encode(self, msg: stun.Message) -> bytes:
        return msg.encode(
            self.key if self.integrity else None,
            fingerprint=self.fingerprint,
            sha256=self.integrity == "sha256",
            sha256_length=self.sha256_length,
        )


def random_message(rng: random.Random) -> tuple[stun.Message, Options]:
    msg = stun.Message(
        rng.getrandbits(12), rng.choice(list(Class)), rng.randbytes(12), random_attributes(rng)
    )
    return msg, Options(rng)


def counted(msg: stun.Message) -> list[tuple[int, Any]]:
    return [(t, v) for t, v in msg.attributes if t not in TRAILERS]


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Failure(what)


# -- oracles ---------------------------------------------------------------------------------------


def roundtrip(rng: random.Random) -> bytes:
    msg, opts = random_message(rng)
    data = opts.encode(msg)
    decoded = decode(data)
    check(decoded.method == msg.method, "method")
    check(decoded.cls == msg.cls, "class")
    check(decoded.transaction_id == msg.transaction_id, "transaction id")
    check(counted(decoded) == msg.attributes, "attributes differ after a round trip")
    first: dict[int, Any] = {}
    for attr_type, value in msg.attributes:
        first.setdefault(attr_type, value)
    for attr_type, value in first.items():
        check(decoded.get(attr_type) == value, f"get({attr_type:#06x})")

    end = len(data) - (8 if opts.fingerprint else 0)
    if opts.integrity is not None:
        size = 20 if opts.integrity == "sha1" else opts.sha256_length
        covered = data[:2] + struct.pack("!H", end - 20) + data[4 : end - size - 4]
        digest = hashlib.sha1 if opts.integrity == "sha1" else hashlib.sha256
        check(data[end - size : end] == hmac.new(opts.key, covered, digest).digest()[:size], "mac")
    if opts.fingerprint:
        crc = zlib.crc32(data[:-8]) ^ FINGERPRINT_XOR
        check(data[-8:] == struct.pack("!HHI", Attr.FINGERPRINT, 4, crc), "fingerprint value")
    check(decoded.check_integrity(opts.key) == (opts.integrity is not None), "check_integrity")
    check(not decoded.check_integrity(opts.key + b"x"), "check_integrity accepts a wrong key")
    check(decoded.check_fingerprint() == opts.fingerprint, "check_fingerprint")
    check(opts.encode(decoded) == data, "re-encoding a decoded message changed its bytes")
    return data


def exercise(msg: stun.Message) -> None:
    attributes = msg.attributes
    present = {t for t, _ in attributes}
    for attr_type in Attr:
        value = msg.get(attr_type)
        listed = msg.get_all(attr_type)
        if attr_type in present:
            check(bool(listed) and value == listed[0], "get/get_all disagree")
        else:
            check(value is None and listed == [], "get of an absent attribute")
    for present_type in present:
        msg.get(present_type)
    msg.get(0)
    msg.get(0xFFFF)
    check(isinstance(msg.check_integrity(CHECK_KEY), bool), "check_integrity type")
    check(isinstance(msg.check_integrity(b""), bool), "check_integrity type")
    check(isinstance(msg.check_fingerprint(), bool), "check_fingerprint type")
    for t in msg.unknown_required():
        check(t < 0x8000 and t not in KNOWN, "unknown_required lists a known type")
    repr(msg)
    again = decode(msg.encode())
    check(again.method == msg.method and again.cls == msg.cls, "re-encoded header")
    check(again.transaction_id == msg.transaction_id, "re-encoded transaction id")
    check(counted(again) == counted(msg), "re-encoded attributes")


def raw_attribute(attr_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + bytes(-len(value) % 4)


def stun_shaped(rng: random.Random) -> bytes:
    attrs = []
    for _ in range(rng.randint(0, 8)):
        t = rng.choice(VALUE_TYPES) if rng.random() < 0.8 else rng.getrandbits(16)
        size = rng.choice((0, 1, 2, 4, 8, 16, 20, 32, rng.randint(0, 60)))
        attrs.append(raw_attribute(t, rng.randbytes(size)))
    body = b"".join(attrs)
    mtype = rng.getrandbits(14)
    return struct.pack("!HHI", mtype, len(body), stun.MAGIC_COOKIE) + rng.randbytes(12) + body


def mutate(rng: random.Random, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        elif op == 2:
            pos = rng.randint(0, len(data))
            data[pos:pos] = rng.randbytes(rng.choice((1, 2, 4, 8, rng.randint(1, 24))))
        elif op == 3 and data:
            pos = rng.randrange(len(data))
            del data[pos : pos + rng.choice((1, 2, 4, 8))]
        elif op == 4:
            del data[rng.randint(0, len(data)) :]
        elif op == 5 and len(data) >= 24:
            # rewrite one attribute length field
            pos = 20 + 4 * rng.randrange((len(data) - 20) // 4)
            data[pos + 2 : pos + 4] = struct.pack("!H", rng.choice((0, 1, 4, rng.getrandbits(16))))
        elif op == 6 and len(data) >= 24:
            # swap in an interesting type at an attribute-aligned position
            pos = 20 + 4 * rng.randrange((len(data) - 20) // 4)
            data[pos : pos + 2] = struct.pack("!H", rng.choice(VALUE_TYPES))
    if len(data) >= 20 and rng.random() < 0.7:
        data[2:4] = struct.pack("!H", (len(data) - 20) & 0xFFFF)
    return bytes(data)


def robustness(rng: random.Random, pool: list[bytes]) -> bytes:
    kind = rng.random()
    if kind < 0.1:
        data = rng.randbytes(rng.randint(0, 100))
    elif kind < 0.3:
        data = stun_shaped(rng)
    else:
        original = rng.choice(pool)
        exercise(decode(original))
        data = mutate(rng, original)
    result = outcome(data)
    # Differential check: validity and content never depend on the message type, and under
    # a random type nothing remembered from earlier messages applies.
    mtype = rng.getrandbits(14)
    if len(data) >= 2:
        other = bytes(((data[0] & 0xC0) | (mtype >> 8), mtype & 0xFF)) + data[2:]
        check(outcome(other) == result, "outcome depends on the message type or on history")
    return data


def outcome(data: bytes) -> tuple[bytes, list[tuple[int, Any]], list[int]] | None:
    """Decode and read ``data``; None for a ParseError, else what it holds."""
    try:
        msg = decode(data)
    except stun.ParseError:
        return None
    exercise(msg)
    return msg.transaction_id, msg.attributes, sorted(msg.unknown_required())


def one_example(rng: random.Random, pool: list[bytes]) -> bytes:
    if rng.random() < 0.3:
        data = roundtrip(rng)
        if len(pool) < 2000:
            pool.append(data)
        else:
            pool[rng.randrange(len(pool))] = data
        return data
    return robustness(rng, pool)


# -- driver ----------------------------------------------------------------------------------------


def seed_pool() -> list[bytes]:
    tid = bytes(range(12))
    every = [(attr, VALUES[attr](random.Random(int(attr)))) for attr in VALUE_TYPES]
    key = b"seed key"
    return [
        stun.Message(1, Class.REQUEST, tid).encode(),
        stun.Message(3, Class.SUCCESS, tid, every).encode(key, fingerprint=True),
        stun.Message(4, Class.ERROR, tid, every[:10]).encode(key, sha256=True),
        stun.Message(0x0ABC, Class.INDICATION, tid, [(0x0042, b"x"), (0x8042, b"y")]).encode(
            fingerprint=True
        ),
    ]


def save(crash_dir: Path, data: bytes) -> Path:
    crash_dir.mkdir(parents=True, exist_ok=True)
    path = crash_dir / f"{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path


def replay(path: Path) -> int:
    data = path.read_bytes()
    print(f"replaying {len(data)} bytes: {data.hex()}")
    try:
        msg = stun.decode(data)
    except stun.ParseError as exc:
        print(f"ParseError: {exc}")
        return 0
    exercise(msg)
    print(f"decoded and read without error: {msg!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--examples", type=int, default=1_000_000, help="default 1,000,000")
    parser.add_argument("--seed", type=int, default=None, help="default: random")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--keep-going", action="store_true", help="do not stop at a failure")
    parser.add_argument("--crash-dir", type=Path, default=Path(__file__).parent / "crashes")
    parser.add_argument("--replay", type=Path, default=None, help="run one saved input")
    args = parser.parse_args(argv)
    if args.replay is not None:
        return replay(args.replay)

    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    print(f"fuzz_codec: seed {seed}, {args.examples:,} examples", flush=True)
    rng = random.Random(seed)
    pool = seed_pool()
    failures = 0
    started = time.monotonic()
    report_at = started + 10
    done = 0
    for done in range(1, args.examples + 1):
        FED.clear()
        try:
            one_example(rng, pool)
        except Exception as exc:
            failures += 1
            print(f"\nFAILURE at example {done}: {exc!r}", file=sys.stderr)
            traceback.print_exc()
            for data in FED:
                path = save(args.crash_dir, data)
                print(f"decoded ({len(data)} bytes, {path}): {data.hex()}", file=sys.stderr)
            if not args.keep_going:
                break
        now = time.monotonic()
        if now >= report_at:
            rate = done / (now - started)
            print(f"  {done:,} examples, {rate:,.0f}/s, {failures} failures", flush=True)
            report_at = now + 10
        if args.seconds is not None and now - started >= args.seconds:
            break
    elapsed = time.monotonic() - started
    print(f"fuzz_codec: {done:,} examples in {elapsed:.1f} s, {failures} failures (seed {seed})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
