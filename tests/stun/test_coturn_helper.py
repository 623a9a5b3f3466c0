"""The coturn test helper itself: readiness, failure reports, clean shutdown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tests.coturn
from tests.coturn import Coturn, CoturnError


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stop_terminates_the_process(turnserver: str, tmp_path: Path) -> None:
    server = Coturn(users={"alice": "pw"}, workdir=tmp_path)
    with server:
        pid = server.pid
        assert pid is not None and not _gone(pid)
        assert server.startup_seconds is not None and server.startup_seconds < 10
        assert f"Default realm: {server.realm}" in server.output()
    assert server.pid is None
    assert _gone(pid)
    server.stop()  # idempotent


def test_a_server_that_exits_is_reported_with_its_output(turnserver: str, tmp_path: Path) -> None:
    server = Coturn(extra_args=["--no-such-option"], workdir=tmp_path)
    with pytest.raises(CoturnError, match="exited") as info:
        server.start()
    assert "unrecognized option '--no-such-option'" in str(info.value)  # its output
    assert server.pid is None


def test_a_foreign_realm_on_our_port_moves_to_new_ports(
    turnserver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another STUN/TURN server sharing the port (SO_REUSEPORT) answers with its realm."""
    real_probe = tests.coturn._probe
    ports: list[int] = []

    def probe(
        address: tuple[str, int], kind: int, timeout: float, alternate: tuple[str, int] | None
    ) -> str | None:
        ports.append(address[1])
        if len(ports) == 1:
            return "someone-else.test"
        return real_probe(address, kind, timeout, alternate)

    monkeypatch.setattr(tests.coturn, "_probe", probe)
    with Coturn(users={"alice": "pw"}, workdir=tmp_path) as server:
        assert ports[0] != server.port
        assert ports[-1] == server.port


def test_accounts_and_a_shared_secret_cannot_be_mixed() -> None:
    with pytest.raises(ValueError, match="cannot mix"):
        Coturn(users={"alice": "pw"}, secret="s3cret")
    with pytest.raises(ValueError):
        Coturn(users={"al:ice": "pw"})


def test_rest_credentials_are_coturn_s_hmac() -> None:
    username, password = tests.coturn.rest_credentials("s3cret", "carol", ttl=0)
    expiry, user = username.split(":")
    assert user == "carol" and expiry.isdigit()
    assert len(password) == 28  # base64 of a 20-byte HMAC-SHA1
