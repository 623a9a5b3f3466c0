"""Server addresses as users type them."""

import pytest

from stun.uri import ServerAddress, parse_server, split_host_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ServerAddress("127.0.0.1", 3478, "udp")),
        ("127.0.0.1:19302", ServerAddress("127.0.0.1", 19302, "udp")),
        ("localhost", ServerAddress("localhost", 3478, "udp")),
        ("::1", ServerAddress("::1", 3478, "udp")),
        ("[::1]", ServerAddress("::1", 3478, "udp")),
        ("[::1]:5000", ServerAddress("::1", 5000, "udp")),
        ("stun:example.org", ServerAddress("example.org", 3478, "udp")),
        ("stun:example.org:1234", ServerAddress("example.org", 1234, "udp")),
        ("stuns:example.org", ServerAddress("example.org", 5349, "tls")),
        ("STUNS:[2001:db8::1]:443", ServerAddress("2001:db8::1", 443, "tls")),
    ],
)
def test_parse_server(text: str, expected: ServerAddress) -> None:
    assert parse_server(text) == expected


def test_transport_override_picks_its_default_port() -> None:
    assert parse_server("example.org", "tls") == ServerAddress("example.org", 5349, "tls")
    assert parse_server("example.org:80", "tcp") == ServerAddress("example.org", 80, "tcp")


@pytest.mark.parametrize("text", ["", ":3478", "host:0", "host:70000", "host:x", "[::1", "[::1]x"])
def test_malformed_addresses_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(text, 3478)


def test_unknown_transport_is_rejected() -> None:
    with pytest.raises(ValueError, match="transport"):
        parse_server("example.org", "sctp")  # type: ignore[arg-type]


def test_str_brackets_ipv6() -> None:
    assert str(ServerAddress("::1", 3478)) == "[::1]:3478"
    assert str(ServerAddress("127.0.0.1", 3478)) == "127.0.0.1:3478"
