"""``turn check`` as a user runs it, against a real coturn over UDP, TCP and TLS.

Most tests call ``turn.__main__.main`` in-process (each run is its own ``asyncio.run``);
the help, Ctrl-C and one success run go through ``python -m turn`` in a real process.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.coturn import Coturn
from tests.udp_responder import udp_responder
from turn.__main__ import main

STEPS = ["resolve", "allocate", "permission", "probe", "channel", "rtt", "close"]


def _turn(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turn", *args], capture_output=True, text=True, timeout=timeout
    )


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``turn check ARGS`` in-process: exit code, stdout, stderr."""
    try:
        code = main(["check", *args])
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _account(server: Coturn, user: str = "alice") -> list[str]:
    return ["-u", user, "-p", server.users[user]]


def _closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        return int(placeholder.getsockname()[1])


def _succeeded(record: dict[str, Any], transport: str) -> None:
    assert record["ok"] is True
    assert record["transport"] == transport
    assert list(record["steps_ms"]) == STEPS
    assert record["relayed"].startswith("127.0.0.1:")
    assert record["mapped"] == record["local"]
    assert record["lifetime"] > 0
    assert record["channel"] is True
    probes = record["probes"]
    assert probes["sent"] == probes["received"] == 5
    assert 0 < probes["min_ms"] <= probes["median_ms"] <= probes["max_ms"]


# -- success -------------------------------------------------------------------------------


def test_help_shows_the_command_and_examples() -> None:
    result = _turn("--help")
    assert result.returncode == 0
    for word in ("check", "examples:", "--peer", "exit codes"):
        assert word in result.stdout
    check = _turn("check", "--help")
    assert check.returncode == 0
    for word in ("--secret", "--password-env", "--cafile", "--insecure", "examples:"):
        assert word in check.stdout


def test_udp_prints_one_aligned_line_per_step(coturn: Coturn) -> None:
    result = _turn("check", f"turn:127.0.0.1:{coturn.port}", *_account(coturn))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == STEPS
    assert len({line.index(" ms ") for line in lines}) == 1  # the times line up
    assert "relayed 127.0.0.1:" in lines[1] and "lifetime 600 s" in lines[1]
    assert "our echo at 127.0.0.1:" in lines[2]
    assert "5/5 probes came back" in lines[5]


def test_tcp_json(coturn: Coturn, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _check(
        capsys, f"turn:127.0.0.1:{coturn.port}?transport=tcp", *_account(coturn), "--json"
    )
    assert (code, err) == (0, "")
    record = json.loads(out)
    _succeeded(record, "tcp")
    assert record["echo"] == "self"
    assert record["username"] == "alice"


def test_tls_with_the_ca_and_without(
    coturn_tls: Coturn, capsys: pytest.CaptureFixture[str]
) -> None:
    server = f"turns:127.0.0.1:{coturn_tls.tls_address[1]}"
    code, out, err = _check(
        capsys, server, *_account(coturn_tls), "--cafile", str(coturn_tls.tls_cert), "--json"
    )
    assert (code, err) == (0, "")
    _succeeded(json.loads(out), "tls")

    code, out, err = _check(capsys, server, *_account(coturn_tls), "--timeout", "2")
    assert code == 1
    assert err.startswith("turn check: error: TLS failed: ") and err.count("\n") == 1
    assert "--cafile" in err

    localhost = f"turns:localhost:{coturn_tls.tls_address[1]}"
    code, out, err = _check(capsys, localhost, *_account(coturn_tls), "--insecure", "--count", "1")
    assert code == 0, err
    assert "1/1 probes came back" in out


def test_rest_api_secret(coturn_rest: Coturn, capsys: pytest.CaptureFixture[str]) -> None:
    assert coturn_rest.secret is not None
    code, out, err = _check(
        capsys, f"127.0.0.1:{coturn_rest.port}", "--secret", coturn_rest.secret, "-u", "carol"
    )
    assert (code, err) == (0, ""), err
    assert out.startswith("resolve ")


def test_password_from_the_environment(
    coturn: Coturn, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURN_CHECK_PASSWORD", coturn.users["bob"])
    code, _, err = _check(
        capsys, f"127.0.0.1:{coturn.port}", "-u", "bob", "--password-env", "TURN_CHECK_PASSWORD"
    )
    assert (code, err) == (0, "")


def test_peer_echo(coturn: Coturn, capsys: pytest.CaptureFixture[str]) -> None:
    with udp_responder(lambda data: data) as echo:
        code, out, err = _check(
            capsys,
            f"127.0.0.1:{coturn.port}",
            *_account(coturn),
            "--peer",
            f"{echo[0]}:{echo[1]}",
            "--json",
        )
    assert (code, err) == (0, "")
    record = json.loads(out)
    _succeeded(record, "udp")
    assert (record["echo"], record["peer"]) == ("peer", f"{echo[0]}:{echo[1]}")


# -- failures ------------------------------------------------------------------------------


def test_wrong_password_names_the_realm(coturn: Coturn, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _check(capsys, f"127.0.0.1:{coturn.port}", "-u", "alice", "-p", "wrong")
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("turn check: error: 401 Unauthorized: the server refused the credentials")
    assert f"'alice' in realm '{coturn.realm}'" in err
    assert out.splitlines()[0].startswith("resolve ")  # the steps that worked are shown

    code, out, err = _check(
        capsys, f"127.0.0.1:{coturn.port}?transport=tcp", "-u", "bob", "-p", "x", "--json"
    )
    assert code == 1
    record = json.loads(out)
    assert (record["ok"], record["failed_step"]) == (False, "allocate")
    assert coturn.realm in record["error"]


@pytest.mark.parametrize(
    ("uri", "kind"), [("turn", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM)]
)
def test_unreachable_server_fails_fast(
    uri: str, kind: int, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port(kind)
    server = f"turn:127.0.0.1:{port}" + ("?transport=tcp" if uri == "tcp" else "")
    began = time.monotonic()
    code, _, err = _check(capsys, server, "-u", "alice", "-p", "x", "--timeout", "1")
    assert time.monotonic() - began < 1.5
    assert code == 1
    assert err.startswith("turn check: error: ") and err.count("\n") == 1
    assert "refused" in err and f"127.0.0.1:{port}" in err


def test_no_echo_says_what_to_do(coturn: Coturn, capsys: pytest.CaptureFixture[str]) -> None:
    silent = _closed_port(socket.SOCK_DGRAM)
    code, out, err = _check(
        capsys,
        f"127.0.0.1:{coturn.port}",
        *_account(coturn),
        "--peer",
        f"127.0.0.1:{silent}",
        "--timeout",
        "0.6",
    )
    assert code == 1
    assert err.startswith("turn check: error: no echo came back") and err.count("\n") == 1
    assert f"127.0.0.1:{silent}" in err
    assert [line.split()[0] for line in out.splitlines()] == STEPS[:3]


def test_ctrl_c_exits_130_and_releases(coturn: Coturn) -> None:
    silent = _closed_port(socket.SOCK_DGRAM)
    command = [sys.executable, "-m", "turn", "check", f"127.0.0.1:{coturn.port}"]
    process = subprocess.Popen(
        [*command, *_account(coturn), "--peer", f"127.0.0.1:{silent}", "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]
    assert lines[2].startswith("permission"), lines
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=10)
    assert process.returncode == 130
    assert "released" in err  # -v shows the Closed event


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["127.0.0.1"],
        ["127.0.0.1", "-u", "alice"],
        ["127.0.0.1", "-p", "x"],
        ["turn:127.0.0.1?transport=sctp", "-u", "alice", "-p", "x"],
        ["turns:127.0.0.1?transport=udp", "-u", "alice", "-p", "x"],
        ["127.0.0.1:notaport", "-u", "alice", "-p", "x"],
        ["127.0.0.1", "-u", "alice", "-p", "x", "--peer", "127.0.0.1"],
        ["127.0.0.1", "-u", "alice", "-p", "x", "--count", "0"],
        ["127.0.0.1", "-u", "alice", "-p", "x", "--timeout", "0"],
        ["127.0.0.1", "-u", "alice", "-p", "x", "--secret", "s"],
        ["127.0.0.1", "-u", "alice", "--password-env", "TURN_CHECK_UNSET_VARIABLE"],
        ["127.0.0.1", "-u", "a b", "--secret", "s"],
    ],
)
def test_bad_usage_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _check(capsys, *args)
    assert code == 2
    assert out == ""
    assert "turn check: error: " in err


def test_no_command_exits_2() -> None:
    assert _turn().returncode == 2
