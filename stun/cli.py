"""What the ``stun``, ``turn`` and ``ice`` commands share: the parser, the common flags,
the help layout, output, one-line errors and exit codes.

Every subcommand takes ``--json``, ``-v/--verbose`` and ``--timeout S`` (defined once,
here); its help ends with the exit codes and then examples. Every expected failure is one
line on stderr, ``<tool> <command>: error: <why>`` (with ``--json`` also an
``{"error": ...}`` object on stdout), usage errors included.

Exit codes: 0 success, 1 the operation failed (timeout, error response, unreachable,
DNS, ICE failed), 2 bad usage, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import ssl
import sys
import textwrap
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn, TypeVar

from .errors import ErrorResponse, StunError

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

JSON_HELP = "print JSON instead of text: one object per line"
HELP_WIDTH = 88
"""Columns of the paragraphs the help epilogs wrap."""
VERBOSE_HELP = "print more detail (events, statistics, what was tried)"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line: ``<prog>: error: <why>``
    and exit code 2 (argparse's own, without the usage text)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """Like argparse's, but arguments no parser knows are blamed on the subcommand
        they came with (``stun probe: error: unrecognized arguments: ...``)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._command(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _command(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The parser of the subcommand in ``parsed`` (this one if there is none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(str(getattr(parsed, action.dest, "")))
                if isinstance(chosen, Parser):
                    return chosen._command(parsed)
        return self


def seconds(text: str) -> float:
    """An argparse ``type``: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"a number of seconds above 0, not {text!r}")
    return value


def common_options(timeout: str, *, default: float | None = None) -> argparse.ArgumentParser:
    """A parent parser with the flags every subcommand takes. ``timeout`` says what
    ``--timeout S`` bounds for that command (and its default)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help=JSON_HELP)
    parent.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    parent.add_argument("--timeout", type=seconds, default=default, metavar="S", help=timeout)
    return parent


def exit_codes(
    failed: str, *, ok: str = "ok", interrupted: str | None = "interrupted (Ctrl-C)"
) -> str:
    """The exit codes paragraph of a help text: what 1 (``failed``), 0 (``ok``) and 130
    (``interrupted``; None for a command that Ctrl-C ends normally) mean for the command."""
    codes = f"exit codes: 0 {ok}, 1 {failed}, 2 bad usage"
    if interrupted is not None:
        codes += f", {EXIT_INTERRUPTED} {interrupted}"
    return textwrap.fill(codes, HELP_WIDTH)


def epilog(examples: Sequence[str], exit_codes: str, notes: str = "") -> str:
    """A help epilog: ``notes``, the ``exit_codes`` paragraph, then ``examples:``
    (always last: shell command lines, comments after ``#``)."""
    parts = [notes.strip("\n")] if notes else []
    parts.append(exit_codes)
    parts.append("examples:\n" + "\n".join(f"  {line}" for line in examples))
    return "\n\n".join(parts) + "\n"


def parser(prog: str, description: str, examples: Sequence[str], exit_codes: str) -> Parser:
    """A command's top-level parser (its subcommands inherit the one-line errors)."""
    return Parser(
        prog=prog,
        description=description,
        epilog=epilog(examples, exit_codes),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_command(
    commands: Any,
    name: str,
    *,
    help: str,
    description: str,
    timeout: str,
    examples: Sequence[str],
    exit_codes: str,
    notes: str = "",
    default_timeout: float | None = None,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    """A subcommand with the common flags (``timeout`` says what ``--timeout S`` bounds
    for it) and an epilog of ``notes``, ``exit_codes`` and ``examples``."""
    return commands.add_parser(  # type: ignore[no-any-return]
        name,
        parents=[common_options(timeout, default=default_timeout), *parents],
        help=help,
        description=description,
        epilog=epilog(examples, exit_codes, notes),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


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
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, ssl.SSLError):
        detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
        return f"TLS failed: {detail or exc}"
    if isinstance(exc, TimeoutError):  # TransactionTimeout, asyncio's, the socket's
        return f"timeout: {first}" if first else "timeout"
    if isinstance(exc, ErrorResponse):
        return f"{exc.code} {exc.reason}" if exc.reason else f"error response {exc.code}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return first or type(exc).__name__


def emit(args: argparse.Namespace, record: dict[str, Any], text: str) -> None:
    """Print one result: as a JSON line with ``--json``, else as ``text``."""
    print(json.dumps(record) if args.json else text, flush=True)


def fail(
    prog: str, message: str, *, as_json: bool = False, record: dict[str, Any] | None = None
) -> int:
    """Report a failure: ``<prog>: error: <message>`` on stderr, one line (and with
    ``as_json`` a JSON object with ``"error"`` on stdout, after ``record``'s fields);
    returns :data:`EXIT_FAILED`."""
    line = " ".join(message.split("\n")[0].split()) or "failed"
    if as_json:
        print(json.dumps({**(record or {}), "error": line}), flush=True)
    print(f"{prog}: error: {line}", file=sys.stderr, flush=True)
    return EXIT_FAILED


def run(
    main: Callable[[], Coroutine[Any, Any, int]],
    prog: str,
    *,
    as_json: bool = False,
    verbose: bool = False,
    expected: tuple[type[BaseException], ...] = (),
) -> int:
    """Run an async command; turn expected failures into a one-line error and exit code 1.

    Expected are :class:`StunError`, ``OSError`` (timeouts, refusals, DNS, TLS),
    ``ValueError`` and the ``expected`` types of the command (``ice`` passes
    ``IceError``: this package does not know it). With ``verbose`` the further lines of
    an error's text (the pairs a failed ICE connection tried) follow on stderr. Ctrl-C
    is exit code 130, without a message.
    """
    caught: tuple[type[BaseException], ...] = (StunError, OSError, ValueError, *expected)
    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except caught as exc:
        code = fail(prog, describe_error(exc), as_json=as_json)
        if verbose:
            for detail in str(exc).splitlines()[1:]:
                print(detail, file=sys.stderr, flush=True)
        return code
