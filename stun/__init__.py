"""STUN (RFC 8489 / RFC 5389): message codec, client transactions, client, server, NAT discovery."""

from .attributes import (
    MAGIC_COOKIE,
    AddressError,
    AddressFamily,
    Attr,
    ChangeRequest,
    Icmp,
    PasswordAlgorithm,
    attribute_name,
    is_comprehension_required,
)
from .auth import (
    NonceFeatures,
    long_term_key,
    nonce_features,
    short_term_key,
    userhash,
)
from .errors import ErrorResponse, IntegrityError, ParseError, StunError, TransactionTimeout
from .message import Class, Message, Method, decode
from .server import ServerStats, StunServer
from .service import Server, serve

__all__ = [
    "MAGIC_COOKIE",
    "AddressError",
    "AddressFamily",
    "Attr",
    "ChangeRequest",
    "Class",
    "ErrorResponse",
    "Icmp",
    "IntegrityError",
    "Message",
    "Method",
    "NonceFeatures",
    "ParseError",
    "PasswordAlgorithm",
    "Server",
    "ServerStats",
    "StunError",
    "StunServer",
    "TransactionTimeout",
    "attribute_name",
    "decode",
    "is_comprehension_required",
    "long_term_key",
    "nonce_features",
    "serve",
    "short_term_key",
    "userhash",
]
