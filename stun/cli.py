"""What the ``stun``, ``turn`` and ``ice`` commands share: common flags, output, exit codes.

Exit codes: 0 success, 1 the operation failed (timeout, error response, unreachable,
DNS), 2 bad usage (argparse's own code), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import ErrorResponse, StunError, TransactionTimeout

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def common_options() -> argparse.ArgumentParser:
    """A parent parser with the flags every subcommand takes."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON (one object per line)")
    parent.add_argument("-v", "--verbose", action="store_true", help="say more")
    parent.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="give up after S seconds (serve: stop after S seconds)",
    )
    return parent


def parsed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type`` from a parser that raises ValueError: the parsed value, or
    a usage error that says why."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def validated(parse: Callable[[str], object]) -> Callable[[str], str]:
    """Like :func:`parsed`, but the value is the text as written (a URL passed on, a
    label)."""
    check = parsed(parse)

    def convert(text: str) -> str:
        check(text)
        return text

    return convert


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong, for people."""
    if isinstance(exc, TransactionTimeout):
        return f"timeout: {exc}"
    if isinstance(exc, ErrorResponse):
        return f"error response {exc.code}: {exc.reason or 'no reason given'}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {getattr(exc, 'verify_message', None) or exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (StunError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def emit(args: argparse.Namespace, record: dict[str, Any], text: str) -> None:
    """Print one result: as a JSON line with ``--json``, else as ``text``."""
    print(json.dumps(record) if args.json else text, flush=True)


def run(main: Callable[[], Coroutine[Any, Any, int]], prog: str, *, as_json: bool = False) -> int:
    """Run an async command; turn expected failures into a one-line error and exit code."""
    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (StunError, OSError, ValueError) as exc:
        message = describe_error(exc)
        if as_json:
            print(json.dumps({"error": message}), flush=True)
        print(f"{prog}: {message}", file=sys.stderr)
        return EXIT_FAILED
