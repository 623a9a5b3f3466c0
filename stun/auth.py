"""STUN credentials: short-term and long-term keys, USERHASH and the RFC 8489 nonce cookie.

Passwords are used as their UTF-8 bytes. Text decoded from the wire keeps invalid UTF-8
as surrogate escapes (see :mod:`stun.attributes`), and is hashed back to the very bytes
the server sent. RFC 8489 asks for OpaqueString (PRECIS)
preparation, which leaves every password made of printable ASCII unchanged; a caller that
needs full PRECIS preparation can pass an already prepared password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .attributes import PasswordAlgorithm

NONCE_COOKIE = "obMatJos2"
"""The prefix of a nonce that carries RFC 8489 security feature bits (section 9.2)."""

AlgorithmName = Literal["md5", "sha256"]

_ALGORITHMS: dict[str | int, PasswordAlgorithm] = {
    "md5": PasswordAlgorithm.MD5,
    "sha256": PasswordAlgorithm.SHA256,
    "sha-256": PasswordAlgorithm.SHA256,
    PasswordAlgorithm.MD5: PasswordAlgorithm.MD5,
    PasswordAlgorithm.SHA256: PasswordAlgorithm.SHA256,
}


def password_algorithm(algorithm: AlgorithmName | int) -> PasswordAlgorithm:
    """Normalise ``"md5"``, ``"sha256"`` or a :class:`PasswordAlgorithm` number."""
    key = algorithm.lower() if isinstance(algorithm, str) else algorithm
    try:
        return _ALGORITHMS[key]
    except KeyError:
        raise ValueError(f"unknown password algorithm: {algorithm!r}") from None


def short_term_key(password: str) -> SessionKey:
    """The HMAC key of short-term credentials (ICE checks): the password itself, as a
    :class:`SessionKey`."""
    return SessionKey(password.encode("utf-8"))


def long_term_key(
    username: str, realm: str, password: str, algorithm: AlgorithmName | int = "md5"
) -> bytes:
    """The HMAC key of long-term credentials: MD5 or SHA-256 of ``username:realm:password``."""
    material = f"{username}:{realm}:{password}".encode("utf-8", "surrogateescape")
    if password_algorithm(algorithm) is PasswordAlgorithm.SHA256:
        return hashlib.sha256(material).digest()
    return hashlib.md5(material, usedforsecurity=False).digest()


def userhash(username: str, realm: str) -> bytes:
    """The USERHASH attribute value: SHA-256 of ``username:realm`` (RFC 8489 section 14.4)."""
    return hashlib.sha256(f"{username}:{realm}".encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class NonceFeatures:
    """The security features a server announces in a nonce cookie (RFC 8489 section 18.8).

    Bits are read as the RFC 8489 errata and libjuice do: bit 0, the least significant,
    is password algorithms; bit 1 is username anonymity.
    """

    password_algorithms: bool = False
    username_anonymity: bool = False

    @property
    def bits(self) -> int:
        """The 24-bit security feature set."""
        return int(self.password_algorithms) | (int(self.username_anonymity) << 1)

    def cookie(self) -> str:
        """The nonce prefix that announces these features: the cookie and 4 base64 chars."""
        return NONCE_COOKIE + base64.b64encode(self.bits.to_bytes(3, "big")).decode()


def nonce_features(nonce: str) -> NonceFeatures | None:
    """The security features of a nonce that starts with the cookie, else None."""
    if not nonce.startswith(NONCE_COOKIE) or len(nonce) < len(NONCE_COOKIE) + 4:
        return None
    encoded = nonce[len(NONCE_COOKIE) : len(NONCE_COOKIE) + 4]
    try:
        bits = int.from_bytes(base64.b64decode(encoded, validate=True), "big")
    except (binascii.Error, ValueError):
        return None
    return NonceFeatures(password_algorithms=bool(bits & 1), username_anonymity=bool(bits & 2))


# -- HMAC with cached per-key hash states -----------------------------------------------------

Mac = Callable[[bytes, bytes | bytearray], bytes]

_CACHE_LIMIT = 512
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class SessionKey(bytes):
    """An HMAC key that keeps its own padded hash states (as attributes named after the
    hash), for a key that signs and checks the many messages of one session (an ICE
    agent's). Plain ``bytes`` keys share one bounded cache, which thousands of agents'
    keys, each used a few times, would keep evicting from one another."""

    def __reduce__(self) -> tuple[type[SessionKey], tuple[bytes]]:
        return SessionKey, (bytes(self),)  # the hash states are rebuilt, not pickled


def _cached_hmac(new_hash: Callable[..., Any]) -> Mac:
    """HMAC (RFC 2104) over ``new_hash``, keeping each key's padded hash states.

    Per message this costs two hash-state copies, two updates and two digests: the same
    work as :mod:`hmac`'s own fallback, and cheaper than copying an OpenSSL HMAC state.
    """
    probe = new_hash()
    block_size, name = probe.block_size, probe.name
    states: dict[bytes, tuple[Any, Any]] = {}

    def padded(key: bytes) -> tuple[Any, Any]:
        block = new_hash(key).digest() if len(key) > block_size else bytes(key)
        block = block.ljust(block_size, b"\0")
        return new_hash(block.translate(_IPAD)), new_hash(block.translate(_OPAD))

    def keyed(key: bytes) -> tuple[Any, Any]:
        if type(key) is SessionKey:
            pads = padded(key)
            setattr(key, name, pads)
            return pads
        if len(states) >= _CACHE_LIMIT:
            states.clear()
        pads = states[key] = padded(key)
        return pads

    def mac(key: bytes, data: bytes | bytearray) -> bytes:
        try:
            inner, outer = key.__dict__[name] if type(key) is SessionKey else states[key]
        except KeyError:
            inner, outer = keyed(key)
        inner = inner.copy()
        inner.update(data)
        outer = outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest

    return mac


hmac_sha1 = _cached_hmac(hashlib.sha1)
hmac_sha1.__doc__ = "HMAC-SHA1 (MESSAGE-INTEGRITY) from the key's cached hash states."
hmac_sha256 = _cached_hmac(hashlib.sha256)
hmac_sha256.__doc__ = "HMAC-SHA256 (MESSAGE-INTEGRITY-SHA256) from the key's cached hash states."
