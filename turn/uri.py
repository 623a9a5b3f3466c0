"""TURN server URIs (RFC 7065): ``turn:host[:port][?transport=udp|tcp]`` and ``turns:...``."""

from __future__ import annotations

from stun.uri import (
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    TRANSPORTS,
    ServerAddress,
    Transport,
    split_host_port,
)


def parse_turn_uri(text: str, transport: Transport | None = None) -> ServerAddress:
    """Parse a ``turn:`` or ``turns:`` URI, or a bare ``host[:port]``.

    ``turns:`` is TLS over TCP (port 5349 by default); ``turn:`` is UDP unless
    ``?transport=tcp`` says otherwise (port 3478). ``transport`` overrides both.
    """
    scheme, sep, rest = text.strip().partition(":")
    implied: Transport = "udp"
    if sep and scheme.lower() in ("turn", "turns"):
        text = rest
        implied = "tls" if scheme.lower() == "turns" else "udp"
    text, _, query = text.partition("?")
    if query:
        key, _, value = query.partition("=")
        value = value.lower()
        if key.lower() != "transport" or value not in ("udp", "tcp"):
            raise ValueError(f"unsupported TURN URI query {query!r} (only transport=udp|tcp)")
        if implied == "tls" and value == "udp":
            raise ValueError("turns: runs over TCP; transport=udp would be DTLS, not supported")
        if implied != "tls":
            implied = "tcp" if value == "tcp" else "udp"
    chosen = transport or implied
    if chosen not in TRANSPORTS:
        raise ValueError(f"unknown transport {chosen!r}")
    host, port = split_host_port(text, DEFAULT_TLS_PORT if chosen == "tls" else DEFAULT_PORT)
    return ServerAddress(host, port, chosen)
