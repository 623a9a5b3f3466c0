"""STUN codec speed: icestack vs aioice 0.13 on the messages ICE exchanges most.

(a) parse an ICE connectivity check, verify integrity and fingerprint, read its four ICE
    attributes; (b) build, sign and encode that check; (c) parse and verify a Binding
    success response and read XOR-MAPPED-ADDRESS; (d) build, sign and encode that response.

    python -m benchmarks.codec [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from aioice import stun as aio

import stun

KEY = b"0123456789abcdefghijkl"  # a 22-character ICE password
USERNAME = "abcd:efgh"
TID = bytes(range(12))
PRIORITY = 1853824767
TIE_BREAKER = 0x1234567890ABCDEF
MAPPED = ("192.0.2.17", 40123)

# Enum members are read once, here, on both sides, as hot-path code would: on Python 3.11
# every ``SomeEnum.MEMBER`` read costs about 60 ns (EnumType.__getattr__ forces a slow
# attribute lookup), which would measure the interpreter rather than either codec.
BINDING, REQUEST, SUCCESS = stun.Method.BINDING, stun.Class.REQUEST, stun.Class.SUCCESS
A_USERNAME, A_PRIORITY = stun.Attr.USERNAME, stun.Attr.PRIORITY
A_CONTROLLING, A_USE_CANDIDATE = stun.Attr.ICE_CONTROLLING, stun.Attr.USE_CANDIDATE
A_MAPPED = stun.Attr.XOR_MAPPED_ADDRESS
AIO_BINDING, AIO_REQUEST, AIO_RESPONSE = aio.Method.BINDING, aio.Class.REQUEST, aio.Class.RESPONSE


def _ours_check() -> bytes:
    return stun.Message(
        BINDING,
        REQUEST,
        TID,
        [
            (A_USERNAME, USERNAME),
            (A_PRIORITY, PRIORITY),
            (A_CONTROLLING, TIE_BREAKER),
            (A_USE_CANDIDATE, True),
        ],
    ).encode(KEY, fingerprint=True)


def _ours_response() -> bytes:
    return stun.Message(BINDING, SUCCESS, TID, [(A_MAPPED, MAPPED)]).encode(KEY, fingerprint=True)


def _ours_parse_check(data: bytes) -> object:
    msg = stun.decode(data)
    if not (msg.check_integrity(KEY) and msg.check_fingerprint()):
        raise AssertionError("check did not verify")
    return (
        msg.get(A_USERNAME),
        msg.get(A_PRIORITY),
        msg.get(A_CONTROLLING),
        msg.get(A_USE_CANDIDATE),
    )


def _ours_parse_response(data: bytes) -> object:
    msg = stun.decode(data)
    if not (msg.check_integrity(KEY) and msg.check_fingerprint()):
        raise AssertionError("response did not verify")
    return msg.get(A_MAPPED)


def _aioice_check() -> bytes:
    msg = aio.Message(
        AIO_BINDING,
        AIO_REQUEST,
        TID,
        {
            "USERNAME": USERNAME,
            "PRIORITY": PRIORITY,
            "ICE-CONTROLLING": TIE_BREAKER,
            "USE-CANDIDATE": None,
        },
    )
    msg.add_message_integrity(KEY)
    msg.add_fingerprint()
    return bytes(msg)


def _aioice_response() -> bytes:
    msg = aio.Message(AIO_BINDING, AIO_RESPONSE, TID, {"XOR-MAPPED-ADDRESS": MAPPED})
    msg.add_message_integrity(KEY)
    msg.add_fingerprint()
    return bytes(msg)


def _aioice_parse_check(data: bytes) -> object:
    msg = aio.parse_message(data)  # verifies the fingerprint while parsing
    if not msg.check_message_integrity(KEY):
        raise AssertionError("check did not verify")
    attrs = msg.attributes
    return (attrs["USERNAME"], attrs["PRIORITY"], attrs["ICE-CONTROLLING"], attrs["USE-CANDIDATE"])


def _aioice_parse_response(data: bytes) -> object:
    msg = aio.parse_message(data)
    if not msg.check_message_integrity(KEY):
        raise AssertionError("response did not verify")
    return msg.attributes["XOR-MAPPED-ADDRESS"]


def _round_size(fn: Callable[[], object], seconds: float) -> int:
    """How many calls of ``fn`` take about ``seconds`` / 5."""
    count = 2000
    while True:
        start = time.perf_counter()
        for _ in range(count):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 25 or count > 10_000_000:
            break
        count *= 4
    return max(count, int(count * (seconds / 5) / elapsed))


def _rates(
    ours: Callable[[], object], theirs: Callable[[], object], seconds: float
) -> tuple[float, float]:
    """Best-of-five calls per second of each, their rounds interleaved.

    Taking turns round by round exposes both to the same conditions (other processes,
    clock changes) instead of measuring one library after the other.
    """
    sizes = (_round_size(ours, seconds), _round_size(theirs, seconds))
    best = [float("inf"), float("inf")]
    for _ in range(5):
        for i, (fn, size) in enumerate(zip((ours, theirs), sizes, strict=True)):
            start = time.perf_counter()
            for _ in range(size):
                fn()
            best[i] = min(best[i], (time.perf_counter() - start) / size)
    return 1 / best[0], 1 / best[1]


def run(seconds: float = 2.0) -> list[dict[str, object]]:
    """Run the four cases; each returns messages/s for both libraries and the ratio
    icestack/aioice (higher is better)."""
    ours_check, ours_resp = _ours_check(), _ours_response()
    aio_check, aio_resp = _aioice_check(), _aioice_response()
    # Each library parses what the other built too, so the bytes are interoperable.
    _ours_parse_check(aio_check)
    _aioice_parse_check(ours_check)
    _ours_parse_response(aio_resp)
    _aioice_parse_response(ours_resp)
    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        (
            "(a) parse+verify ICE check",
            lambda: _ours_parse_check(ours_check),
            lambda: _aioice_parse_check(ours_check),
        ),
        ("(b) build+sign ICE check", _ours_check, _aioice_check),
        (
            "(c) parse+verify Binding response",
            lambda: _ours_parse_response(ours_resp),
            lambda: _aioice_parse_response(ours_resp),
        ),
        ("(d) build+sign Binding response", _ours_response, _aioice_response),
    ]
    rows: list[dict[str, object]] = []
    for name, ours, theirs in cases:
        a, b = _rates(ours, theirs, seconds)
        rows.append(
            {
                "metric": name,
                "unit": "msg/s",
                "better": "higher",
                "icestack": a,
                "aioice": b,
                "ratio": a / b,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run (about 5 s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows = run(0.25 if args.quick else 2.0)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'metric':36} {'icestack':>12} {'aioice':>12} {'ratio':>7}")
    for row in rows:
        print(
            f"{row['metric']:36} {row['icestack']:>12,.0f} {row['aioice']:>12,.0f}"
            f" {row['ratio']:>6.2f}x"
        )


if __name__ == "__main__":
    main()
