"""Server addresses as people write them: ``host``, ``host:port``, ``[v6]:port``, ``stun:`` URIs."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Literal

Transport = Literal["udp", "tcp", "tls"]

DEFAULT_PORT = 3478
DEFAULT_TLS_PORT = 5349
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where a STUN server is: host name or IP literal, port and transport."""

    host: str
    port: int
    transport: Transport = "udp"

    def __str__(self) -> str:
        return format_address((self.host, self.port))


def format_address(address: tuple[str, int]) -> str:
    """``host:port``, an IPv6 host in brackets: ``[::1]:3478``."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(text: str, default_port: int, *, allow_zero: bool = False) -> tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; a bare IPv6 literal works too.

    Port 0 ("any free port") is accepted only with ``allow_zero``, for addresses to bind.
    """
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"malformed address: {text!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"no host in {text!r}")
    if not port_text:
        return host, default_port
    lowest = 0 if allow_zero else 1
    if not port_text.isdigit() or not lowest <= int(port_text) <= 0xFFFF:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port_text)


def as_server(
    server: str | ServerAddress | tuple[str, int], transport: Transport | None = None
) -> ServerAddress:
    """Accept a server as text, a :class:`ServerAddress` or an ``(ip, port)`` tuple."""
    if isinstance(server, ServerAddress):
        return server if transport is None else ServerAddress(server.host, server.port, transport)
    if isinstance(server, tuple):
        return ServerAddress(server[0], server[1], transport or "udp")
    return parse_server(server, transport)


def parse_server(text: str, transport: Transport | None = None) -> ServerAddress:
    """Parse a server given as ``host[:port]`` or a ``stun:``/``stuns:`` URI (RFC 7064).

    ``transport`` overrides what the text implies; ``stuns:`` means TLS. The default
    port is 3478, or 5349 for TLS.
    """
    scheme, sep, rest = text.partition(":")
    implied: Transport = "udp"
    if sep and scheme.lower() in ("stun", "stuns") and not rest.startswith("//"):
        implied = "tls" if scheme.lower() == "stuns" else "udp"
        text = rest
    chosen = transport or implied
    if chosen not in TRANSPORTS:
        raise ValueError(f"unknown transport {chosen!r}")
    host, port = split_host_port(text, DEFAULT_TLS_PORT if chosen == "tls" else DEFAULT_PORT)
    return ServerAddress(host, port, chosen)


def ip_literal(host: str, family: int = 0) -> str | None:
    """``host`` in canonical form if it is an IP address literal of ``family`` (0: either
    family; ``socket.AF_INET`` or ``AF_INET6`` otherwise), else None."""
    for candidate in (socket.AF_INET, socket.AF_INET6):
        if family in (0, candidate):
            try:
                return socket.inet_ntop(candidate, socket.inet_pton(candidate, host))
            except OSError:
                continue
    return None
