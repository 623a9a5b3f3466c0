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
    SessionKey,
    long_term_key,
    nonce_features,
    short_term_key,
    userhash,
)
from .client import BindingResult, ClientStats, StunClient, binding
from .errors import (
    ErrorResponse,
    IntegrityError,
    ParseError,
    ResolutionError,
    StunError,
    TransactionTimeout,
)
from .framing import StreamFramer
from .message import Class, Message, Method, decode
from .nat import Behavior, NatReport, NotRfc5780Error
from .nat import discover as discover_nat
from .server import ServerStats, StunServer
from .service import Server, serve
from .transaction import ClientTransaction
from .uri import ServerAddress, parse_server

__all__ = [
    "MAGIC_COOKIE",
    "AddressError",
    "AddressFamily",
    "Attr",
    "Behavior",
    "BindingResult",
    "ChangeRequest",
    "Class",
    "ClientStats",
    "ClientTransaction",
    "ErrorResponse",
    "Icmp",
    "IntegrityError",
    "Message",
    "Method",
    "NatReport",
    "NonceFeatures",
    "NotRfc5780Error",
    "ParseError",
    "PasswordAlgorithm",
    "ResolutionError",
    "Server",
    "ServerAddress",
    "ServerStats",
    "SessionKey",
    "StreamFramer",
    "StunClient",
    "StunError",
    "StunServer",
    "TransactionTimeout",
    "attribute_name",
    "binding",
    "decode",
    "discover_nat",
    "is_comprehension_required",
    "long_term_key",
    "nonce_features",
    "parse_server",
    "serve",
    "short_term_key",
    "userhash",
]
