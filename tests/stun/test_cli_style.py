"""One style across ``python -m stun``, ``python -m turn`` and ``python -m ice``: the same
``--json``, ``-v/--verbose`` and ``--timeout S`` flags with the same help (the timeout's
saying what it bounds for each command), help that ends with runnable examples on
loopback, and failures that are one line ``<tool> <command>: error: <why>`` on stderr
with the documented exit code. The commands run as real processes."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import ice.__main__
import stun.__main__
import turn.__main__
from stun import cli

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0

COMMANDS = [
    ("stun", "probe"),
    ("stun", "nat"),
    ("stun", "serve"),
    ("turn", "check"),
    ("ice", "gather"),
    ("ice", "connect"),
    ("ice", "demo"),
]
"""Every subcommand of the three tools."""


def _run(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS``, help unwrapped (wide COLUMNS) so each option is one line."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=ROOT,
        stdin=stdin,
        env={**os.environ, "COLUMNS": "1000"},
    )


def _parsers() -> dict[str, Callable[[], argparse.ArgumentParser]]:
    return {
        "stun": lambda: stun.__main__._parser()[0],
        "turn": lambda: turn.__main__._parser()[0],
        "ice": lambda: ice.__main__._parser()[0],
    }


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, str], str]:
    """``--help`` of every subcommand."""
    texts = {}
    for tool, command in COMMANDS:
        done = _run(tool, command, "--help")
        assert (done.returncode, done.stderr) == (0, ""), (tool, command)
        texts[tool, command] = done.stdout
    return texts


def _option_help(text: str, option: str) -> str:
    """The help of ``option`` (as argparse lists it, e.g. ``-v, --verbose``)."""
    for line in text.splitlines():
        if line.startswith(f"  {option}  "):
            return line[len(option) + 2 :].strip()
    raise AssertionError(f"{option} is not in:\n{text}")


# -- the shared flags ----------------------------------------------------------------------


def test_json_and_verbose_are_the_same_everywhere(helps: dict[tuple[str, str], str]) -> None:
    for text in helps.values():
        assert _option_help(text, "--json") == cli.JSON_HELP
        assert _option_help(text, "-v, --verbose") == cli.VERBOSE_HELP
        assert "-q" not in text.split("\n\n", 1)[0]  # no command has a quiet flag


def test_timeout_says_what_it_bounds_for_each_command(
    helps: dict[tuple[str, str], str],
) -> None:
    timeouts = {key: _option_help(text, "--timeout S") for key, text in helps.items()}
    assert len(set(timeouts.values())) == len(COMMANDS)  # one text per command
    for (tool, command), text in timeouts.items():
        assert " S " in f" {text} ", (tool, command, text)
        serving = re.search(r"\bserv(e|es|ing)\b", text) is not None
        assert serving == (command == "serve"), text  # only serve's timeout is about serving
    assert "default 10" in timeouts["turn", "check"]
    assert "each STUN and TURN server" in timeouts["ice", "gather"]
    assert "peer's line" in timeouts["ice", "connect"]


def test_a_zero_timeout_is_a_one_line_usage_error_everywhere() -> None:
    for tool, command in COMMANDS:
        done = _run(tool, command, "--timeout", "0")
        assert done.returncode == cli.EXIT_USAGE, (tool, command)
        assert done.stdout == ""
        assert done.stderr == (
            f"{tool} {command}: error: argument --timeout: a number of seconds above 0,"
            f" not '0' (see {tool} {command} --help)\n"
        )


# -- help: exit codes, then examples -------------------------------------------------------


def _examples(text: str) -> list[str]:
    head, marker, tail = text.rpartition("\nexamples:\n")
    assert marker, text
    head = " ".join(head.split())
    assert "exit codes: 0 " in head and ", 2 bad usage" in head
    lines = tail.rstrip("\n").splitlines()
    assert lines and all(line.startswith("  ") for line in lines), tail
    return [line.strip() for line in lines]


@pytest.mark.parametrize("tool", ["stun", "turn", "ice"])
def test_every_help_ends_with_examples_that_parse(
    tool: str, helps: dict[tuple[str, str], str]
) -> None:
    top = _run(tool, "--help")
    assert top.returncode == 0
    texts = {None: top.stdout} | {c: t for (name, c), t in helps.items() if name == tool}
    for command, text in texts.items():
        examples = _examples(text)
        for example in examples:
            argv = shlex.split(example, comments=True)
            assert argv[0] == tool and (command is None or argv[1] == command), example
            _parsers()[tool]().parse_args(argv[1:])  # a real invocation: it parses
            for ip in re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", example):
                assert ip.startswith("127."), example
            assert "example." not in example


def test_exit_codes_are_documented_alike(helps: dict[tuple[str, str], str]) -> None:
    for (tool, command), text in helps.items():
        codes = " ".join(text.rpartition("exit codes: ")[2].split("examples:")[0].split())
        assert codes.startswith("0 "), (tool, command)
        assert ", 1 " in codes and ", 2 bad usage" in codes
        if command != "serve":  # Ctrl-C is how a server stops: exit code 0
            assert ", 130 interrupted (Ctrl-C" in codes


# -- one-line errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prog", "args"),
    [
        ("stun probe", ["127.0.0.1:notaport"]),
        ("stun nat", []),
        ("stun serve", ["--bind", "127.0.0.1:99999"]),
        ("stun serve", ["--tls-cert", "cert.pem"]),
        ("turn check", ["turn:127.0.0.1:3478"]),
        ("turn check", ["turn:127.0.0.1:3478", "-p", "x"]),
        ("ice gather", ["--address", "not-an-ip"]),
        ("ice gather", ["--turn", "turn:127.0.0.1:3478"]),
        ("ice connect", ["--ta", "1"]),
        ("ice demo", ["--frobnicate"]),
        ("stun", ["frobnicate"]),
        ("turn", []),
        ("ice", []),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(prog: str, args: list[str]) -> None:
    done = _run(*prog.split(), *args)
    assert done.returncode == cli.EXIT_USAGE
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"{prog}: error: ")
    assert done.stderr.endswith(f" (see {prog} --help)\n")


def _closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        return int(placeholder.getsockname()[1])


@contextlib.contextmanager
def _udp_port_in_use() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def _one_line_failure(done: subprocess.CompletedProcess[str], prog: str) -> str:
    assert done.returncode == cli.EXIT_FAILED, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"{prog}: error: "), done.stderr
    return done.stderr.removeprefix(f"{prog}: error: ").rstrip("\n")


def test_a_closed_port_fails_each_client_with_one_line() -> None:
    udp, tcp = _closed_port(socket.SOCK_DGRAM), _closed_port(socket.SOCK_STREAM)
    why = _one_line_failure(_run("stun", "probe", f"127.0.0.1:{udp}"), "stun probe")
    assert "unreachable" in why and "Connection refused" in why
    why = _one_line_failure(_run("stun", "probe", f"127.0.0.1:{tcp}", "--tcp"), "stun probe")
    assert why == "connection refused"
    turn_check = ("turn", "check", f"turn:127.0.0.1:{udp}", "-u", "alice", "-p", "x")
    assert "refused" in _one_line_failure(_run(*turn_check), "turn check")
    tcp_check = ("turn", "check", f"turn:127.0.0.1:{tcp}?transport=tcp", "-u", "a", "-p", "x")
    assert "refused" in _one_line_failure(_run(*tcp_check), "turn check")


def test_a_silent_port_fails_nat_and_gather_with_one_line() -> None:
    with _udp_port_in_use() as port:  # bound, so no ICMP: a timeout
        nat = _run("stun", "nat", f"127.0.0.1:{port}", "--timeout", "0.2")
        gather = _run(
            "ice", "gather", "--address", "127.0.0.1", "--stun", f"127.0.0.1:{port}",
            "--timeout", "0.2",
        )  # fmt: skip
    assert _one_line_failure(nat, "stun nat").startswith("timeout: ")
    why = _one_line_failure(gather, "ice gather")
    assert why == f"1 of 1 servers failed (127.0.0.1:{port})"
    assert f"failed: 127.0.0.1:{port}: timeout" in gather.stdout  # the reason, a result


def test_serve_on_an_address_in_use_fails_with_one_line() -> None:
    with _udp_port_in_use() as port:
        done = _run("stun", "serve", "--bind", f"127.0.0.1:{port}", "--timeout", "5")
    assert "in use" in _one_line_failure(done, "stun serve")


def test_json_failures_are_an_error_object_too() -> None:
    udp = _closed_port(socket.SOCK_DGRAM)
    for args in (
        ("stun", "probe", f"127.0.0.1:{udp}", "--json"),
        ("turn", "check", f"127.0.0.1:{udp}", "-u", "alice", "-p", "x", "--json"),
    ):
        done = _run(*args)
        why = _one_line_failure(done, " ".join(args[:2]))
        assert done.stdout.endswith(f'"error": "{why}"}}\n')


def test_an_ice_error_is_one_line_and_exit_1() -> None:
    """IceError (here: stdin ends before the peer's line) goes through stun.cli.run."""
    done = _run("ice", "connect", "--address", "127.0.0.1")
    assert done.stdout.startswith("icestack1 ")
    assert _one_line_failure(done, "ice connect") == "the input ended before the peer's offer line"
