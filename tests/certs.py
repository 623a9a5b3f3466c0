"""A self-signed certificate for loopback TLS tests, made once per test session.

``server, client = tls_contexts()`` gives a server context holding the certificate and a
client context that trusts exactly that certificate and checks the host name, valid for
127.0.0.1, ::1 and localhost.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from functools import cache
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOSTS = ("127.0.0.1", "::1", "localhost")


class TlsContexts(NamedTuple):
    server: ssl.SSLContext
    client: ssl.SSLContext


@cache
def _certificate() -> tuple[bytes, bytes]:
    """PEM certificate and PEM private key of a self-signed certificate for :data:`HOSTS`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "icestack test")])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(h)) for h in HOSTS if h != "localhost"]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def tls_contexts() -> TlsContexts:
    """Fresh server and client contexts for the session's loopback certificate."""
    cert_pem, _ = _certificate()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as directory:
        server.load_cert_chain(*write_pem(Path(directory)))
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return TlsContexts(server, client)


def write_pem(directory: Path) -> tuple[Path, Path]:
    """Write the session's certificate and key as PEM files; return their paths."""
    cert_pem, key_pem = _certificate()
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    return cert_file, key_file
