"""Run a real coturn ``turnserver`` for a test: start it in the foreground, wait until it is
ready, stop it.

coturn gets every option on the command line (``-n``: no configuration file). It binds its
listeners with SO_REUSEPORT, so a stale server on the same port would silently share it:
readiness is therefore "an unauthenticated Allocate gets a 401 that carries *our* realm",
which a Binding answer from any STUN server could not prove (an answer with a foreign realm
makes it start again on fresh ports). Each instance gets a unique realm, free ports and its
own scratch directory (pid file, SQLite user db, log).

Typical use::

    with Coturn(users={"alice": "secret"}) as server:
        sock.sendto(request, server.address)

    with Coturn(users={"alice": "secret"}, tls=True) as server:
        context = server.client_ssl_context()  # trusts the server's self-signed certificate
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import NoReturn

import stun
from turn.credentials import rest_credentials as _rest_credentials

TURNSERVER = "turnserver"
LOOPBACK = "127.0.0.1"
LOOPBACK_2 = "127.0.0.2"

READY_TIMEOUT = 10.0
"""Seconds coturn may take to answer the readiness probe (it takes ~30-60 ms here)."""
PROBE_INTERVAL = 0.01
"""Seconds between readiness probes that were refused outright (nothing listening yet)."""
STOP_TIMEOUT = 5.0
"""Seconds to wait after SIGTERM before SIGKILL."""

START_TRIES = 3
"""Starts on fresh ports when another STUN server turns out to share the chosen port."""

_PORT_TRIES = 50


class CoturnError(RuntimeError):
    """coturn did not start or did not become ready; the message carries its output."""


class _PortShared(Exception):
    """A listener answered with another realm: a second server shares the port."""


CoturnFactory = Callable[..., "Coturn"]
"""The ``coturn_factory`` fixture: call it with :class:`Coturn` options, get a started one."""


def turnserver_path() -> str | None:
    """The turnserver executable, or None when coturn is not installed."""
    return shutil.which(TURNSERVER)


def free_port(hosts: Iterable[str], exclude: Iterable[int] = ()) -> int:
    """A port that is free for both UDP and TCP on every one of ``hosts``.

    The first host's kernel picks the port (bind to port 0); it is then checked on the
    other hosts. The sockets are closed before returning, so there is a small window in
    which another process could take the port; the realm check of the readiness probe
    catches a port shared that way.
    """
    hosts = list(hosts)
    excluded = set(exclude)
    for _ in range(_PORT_TRIES):
        held: list[socket.socket] = []
        try:
            first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(first)
            first.bind((hosts[0], 0))
            port: int = first.getsockname()[1]
            if port in excluded:
                continue
            for host in hosts:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    if host == hosts[0] and kind == socket.SOCK_DGRAM:
                        continue
                    sock = socket.socket(socket.AF_INET, kind)
                    held.append(sock)
                    sock.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise CoturnError(f"no port free for UDP and TCP on {hosts} after {_PORT_TRIES} tries")


def rest_credentials(secret: str, user: str, ttl: float = 3600.0) -> tuple[str, str]:
    """TURN REST API credentials (coturn ``--use-auth-secret``) valid for ``ttl`` seconds.

    :func:`turn.credentials.rest_credentials`, except that ``ttl`` may also be zero or
    negative, for credentials that expire at once or have expired ``-ttl`` seconds ago
    (the expiry is ``int(time.time() + ttl)`` either way).
    """
    if ttl > 0:
        return _rest_credentials(secret, user, ttl)
    return _rest_credentials(secret, user, 1.0, now=time.time() + ttl - 1.0)


def peer_range(spec: str) -> str:
    """A peer address range as coturn's ``--denied-peer-ip`` / ``--allowed-peer-ip`` take it.

    ``"IP"`` and ``"IP-IP"`` pass through (checked); a CIDR network ``"NET/LEN"`` becomes
    ``"FIRST-LAST"``: coturn 4.6.1 does not understand CIDR (it logs "Wrong address
    format" and goes on without the rule). Raises :class:`ValueError` on anything else.
    """
    try:
        if "/" in spec:
            network = ipaddress.ip_network(spec, strict=False)
            return f"{network[0]}-{network[-1]}"
        first, _, last = spec.partition("-")
        low, high = ipaddress.ip_address(first), ipaddress.ip_address(last or first)
    except ValueError as exc:
        raise ValueError(f"not an IP address, IP-IP range or CIDR network: {spec!r}") from exc
    if low.version != high.version or low > high:  # type: ignore[operator]
        raise ValueError(f"not an IP address range: {spec!r}")
    return spec


class Coturn:
    """One coturn process listening on loopback.

    Options:

    * ``users``: long-term credential accounts (``--lt-cred-mech --user=NAME:PASS``);
    * ``secret``: TURN REST API shared secret (``--use-auth-secret --static-auth-secret``),
      see :meth:`rest_credentials`. coturn cannot mix the two (the secret wins and the
      accounts stop working), so giving both is an error;
    * ``tcp``: also listen on TCP on the same port (coturn's default);
    * ``rfc5780``: listen on ``host`` and ``alt_host``, each on ``port`` and ``alt_port``
      (``--alt-listening-port``), which turns on coturn's RFC 5780 NAT behaviour discovery
      (OTHER-ADDRESS, CHANGE-REQUEST over UDP); coturn enables it by itself whenever it
      has two listening IPs of one family. Probe :attr:`address` (or ``(host,
      alt_port)``): coturn 4.6 computes the "other" IP as the one after the *first*
      listening IP, so requests that arrive on ``alt_host`` get ``alt_host`` itself as
      OTHER-ADDRESS and a change-IP answer from the same IP;
    * ``fingerprint``: ``--fingerprint``, FINGERPRINT on every response;
    * ``tls``: a TLS listener on its own port, :attr:`tls_address` (``--cert --pkey
      --tls-listening-port``; ``--alt-tls-listening-port`` too in RFC 5780 mode; without
      it, ``--no-tls``). The certificate is the self-signed one of :mod:`tests.certs`
      (EC P-256, names 127.0.0.1, ::1 and localhost), written into the scratch directory
      (:attr:`tls_cert`, :attr:`tls_key`); :meth:`client_ssl_context` trusts it. Readiness
      also waits for an Allocate over TLS to get the 401 with our realm. Measured with
      coturn 4.6.1: a default client negotiates TLS 1.2 (TLS 1.3 when the client insists);
      ``tcp=False`` (``--no-tcp``) keeps the TLS listener; coturn also accepts TLS on the
      plain TCP port (it sniffs the first bytes); DTLS stays off (``--no-dtls``);
    * ``max_allocate_lifetime``: ``--max-allocate-lifetime=N`` (seconds). coturn grants
      ``min(max(asked, 600), N)`` to an Allocate (600 when LIFETIME is absent or 0), so with
      ``N=1`` every allocation lasts 1 s: 1.0 s later it is gone (Refresh: 437 "Invalid
      allocation"; CreatePermission: 400 "Bad Request"). A quirk: a Refresh asking less
      than 600 s (or without LIFETIME) is granted 600 s whatever N is, and really lasts;
      only a Refresh asking 600 s or more is capped at N. coturn 4.6.1 has no option for
      the default lifetime (no ``--default-allocate-lifetime``): it is 600 s;
    * ``permission_lifetime``: ``--permission-lifetime=N``: a peer's data stops being
      relayed N s after the CreatePermission (measured 1.0 s for N=1); a CreatePermission
      again before then keeps it going;
    * ``channel_lifetime``: ``--channel-lifetime=N``: ChannelData stops N s after the
      ChannelBind (1.0 s for N=1), and so does the permission the ChannelBind installed,
      whatever ``permission_lifetime`` is (no Data indications either); a ChannelBind
      again keeps it going;
    * ``stale_nonce``: ``--stale-nonce=N`` (N >= 1; coturn takes 0 as "never stale"): a
      nonce is answered with 438 "Stale nonce" (with a new NONCE and the REALM) N to N+1
      s after it was issued (coturn's clock ticks in whole seconds; 1.6-2.0 s for N=1),
      however often it is used; a retry with the new nonce succeeds. Without the option
      no nonce went stale within 4 s;
    * ``denied_peers``: ``--denied-peer-ip`` per item (an IP, ``IP-IP``, or a CIDR network,
      see :func:`peer_range`). CreatePermission or ChannelBind to a denied peer: 403
      "Forbidden IP"; a CreatePermission naming an allowed and a denied peer fails as a
      whole (403, the allowed one gets no permission either); a Send indication to a
      denied peer is dropped. Loopback peers are otherwise allowed here;
    * ``allowed_peers``: ``--allowed-peer-ip`` per item: exceptions to ``denied_peers``
      (alone it changes nothing, since everything is allowed already);
    * ``user_quota``: ``--user-quota=N``: allocations per user; the next one gets 486
      "Allocation Quota Reached";
    * ``no_stun``: ``--no-stun``: Binding requests go unanswered, TURN works;
    * ``alternate``: ``--alternate-server`` (and ``--tls-alternate-server`` with ``tls``):
      every Allocate, authenticated or not, is answered with 300 Try Alternate naming
      this address; readiness is then that answer instead of a 401;
    * ``extra_args``: anything else, appended to the command line.

    Relaying is set up for loopback tests: ``--relay-ip=<host> --allow-loopback-peers``.
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        secret: str | None = None,
        realm: str | None = None,
        tcp: bool = True,
        rfc5780: bool = False,
        fingerprint: bool = False,
        tls: bool = False,
        max_allocate_lifetime: int | None = None,
        permission_lifetime: int | None = None,
        channel_lifetime: int | None = None,
        stale_nonce: int | None = None,
        denied_peers: Iterable[str] = (),
        allowed_peers: Iterable[str] = (),
        user_quota: int | None = None,
        no_stun: bool = False,
        alternate: tuple[str, int] | None = None,
        host: str = LOOPBACK,
        alt_host: str = LOOPBACK_2,
        extra_args: Iterable[str] = (),
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        if users and secret is not None:
            raise ValueError("coturn cannot mix user accounts with a REST API shared secret")
        for name, password in (users or {}).items():
            if not name or ":" in name or ":" in password:
                raise ValueError(f"coturn cannot take the account {name!r}:{password!r}")
        self.users: dict[str, str] = dict(users or {})
        self.secret = secret
        self.realm = realm or f"icestack-{uuid.uuid4().hex[:12]}.test"
        self.tcp = tcp
        self.rfc5780 = rfc5780
        self.fingerprint = fingerprint
        self.tls = tls
        for name, value in (
            ("max_allocate_lifetime", max_allocate_lifetime),
            ("permission_lifetime", permission_lifetime),
            ("channel_lifetime", channel_lifetime),
            ("stale_nonce", stale_nonce),
            ("user_quota", user_quota),
        ):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
        self.max_allocate_lifetime = max_allocate_lifetime
        self.permission_lifetime = permission_lifetime
        self.channel_lifetime = channel_lifetime
        self.stale_nonce = stale_nonce
        self.denied_peers = [peer_range(spec) for spec in denied_peers]
        self.allowed_peers = [peer_range(spec) for spec in allowed_peers]
        self.user_quota = user_quota
        self.no_stun = no_stun
        self.alternate = alternate
        self.host = host
        self.alt_host: str | None = alt_host if rfc5780 else None
        self.port = 0
        self.alt_port: int | None = None
        self.tls_port: int | None = None
        self.alt_tls_port: int | None = None
        self.tls_cert: Path | None = None
        """The PEM certificate file (``tls=True``, once started)."""
        self.tls_key: Path | None = None
        """The PEM private key file (``tls=True``, once started)."""
        self.extra_args = list(extra_args)
        self._workdir = Path(workdir) if workdir is not None else None
        self._own_workdir = False
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self.startup_seconds: float | None = None
        """How long start() took from spawning coturn to the readiness probe's 401."""

    # -- addresses ---------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The primary listening address (UDP, and TCP when enabled)."""
        return self.host, self.port

    @property
    def other_address(self) -> tuple[str, int] | None:
        """RFC 5780 OTHER-ADDRESS: the alternate IP on the alternate port (None without)."""
        if self.alt_host is None or self.alt_port is None:
            return None
        return self.alt_host, self.alt_port

    @property
    def listening_addresses(self) -> list[tuple[str, int]]:
        """Every address coturn listens on (four in RFC 5780 mode)."""
        hosts = [self.host] if self.alt_host is None else [self.host, self.alt_host]
        ports = [self.port] if self.alt_port is None else [self.port, self.alt_port]
        return [(h, p) for h in hosts for p in ports]

    @property
    def tls_address(self) -> tuple[str, int]:
        """The TLS listening address (``tls=True``, once started)."""
        if self.tls_port is None:
            raise ValueError("this coturn has no TLS listener (tls=False, or not started)")
        return self.host, self.tls_port

    @property
    def tls_listening_addresses(self) -> list[tuple[str, int]]:
        """Every TLS listening address (none without TLS, four in RFC 5780 mode)."""
        if self.tls_port is None:
            return []
        hosts = [self.host] if self.alt_host is None else [self.host, self.alt_host]
        ports = [self.tls_port] if self.alt_tls_port is None else [self.tls_port, self.alt_tls_port]
        return [(h, p) for h in hosts for p in ports]

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate and checks host names.

        The certificate names 127.0.0.1, ::1 and localhost: connect to
        :attr:`tls_address` with ``server_hostname`` 127.0.0.1 or localhost (localhost
        for the ``alt_host`` listeners).
        """
        if self.tls_cert is None:
            raise ValueError("this coturn has no TLS certificate (tls=False, or not started)")
        context = ssl.create_default_context(cafile=self.tls_cert)
        assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
        return context

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def rest_credentials(self, user: str, ttl: float = 3600.0) -> tuple[str, str]:
        """TURN REST API credentials for this server's shared secret (see
        :func:`rest_credentials`: ``ttl`` <= 0 gives expired ones)."""
        if self.secret is None:
            raise ValueError("this coturn was started without a shared secret")
        return rest_credentials(self.secret, user, ttl)

    def long_term_key(self, user: str) -> bytes:
        """The MD5 long-term credential key of one of ``users``."""
        return stun.long_term_key(user, self.realm, self.users[user])

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The turnserver command line (valid once ports are chosen by start())."""
        assert self._workdir is not None
        exe = turnserver_path() or TURNSERVER
        args = [
            exe,
            "-n",
            f"--listening-ip={self.host}",
            f"--listening-port={self.port}",
            "--no-dtls",
            "--no-cli",
            f"--realm={self.realm}",
            f"--pidfile={self._workdir / 'turnserver.pid'}",
            f"--userdb={self._workdir / 'turndb'}",
            "--log-file=stdout",
            "--simple-log",
            f"--relay-ip={self.host}",
            "--allow-loopback-peers",
        ]
        if self.alt_host is not None:
            args += [f"--listening-ip={self.alt_host}", f"--alt-listening-port={self.alt_port}"]
        else:
            args.append("--no-rfc5780")
        if not self.tcp:
            args.append("--no-tcp")
        if self.fingerprint:
            args.append("--fingerprint")
        if self.tls:
            args += [
                f"--cert={self.tls_cert}",
                f"--pkey={self.tls_key}",
                f"--tls-listening-port={self.tls_port}",
            ]
            if self.alt_tls_port is not None:
                args.append(f"--alt-tls-listening-port={self.alt_tls_port}")
        else:
            args.append("--no-tls")
        for option, value in (
            ("--max-allocate-lifetime", self.max_allocate_lifetime),
            ("--permission-lifetime", self.permission_lifetime),
            ("--channel-lifetime", self.channel_lifetime),
            ("--stale-nonce", self.stale_nonce),
            ("--user-quota", self.user_quota),
        ):
            if value is not None:
                args.append(f"{option}={value}")
        args += [f"--denied-peer-ip={spec}" for spec in self.denied_peers]
        args += [f"--allowed-peer-ip={spec}" for spec in self.allowed_peers]
        if self.alternate is not None:
            args.append(f"--alternate-server={self.alternate[0]}:{self.alternate[1]}")
            if self.tls:
                args.append(f"--tls-alternate-server={self.alternate[0]}:{self.alternate[1]}")
        if self.no_stun:
            args.append("--no-stun")
        if self.secret is not None:
            args += ["--use-auth-secret", f"--static-auth-secret={self.secret}"]
        else:
            args.append("--lt-cred-mech")
            args += [f"--user={name}:{password}" for name, password in self.users.items()]
        return args + self.extra_args

    def start(self) -> None:
        """Spawn coturn and return once it answers the readiness probe.

        Raises :class:`CoturnError` (with coturn's output) if it exits or is not ready in
        :data:`READY_TIMEOUT` seconds; the process is stopped in that case.
        """
        if self._process is not None:
            raise RuntimeError("coturn is already running")
        if turnserver_path() is None:
            raise CoturnError("coturn is not installed: no turnserver on PATH")
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="coturn-"))
            self._own_workdir = True
        try:
            if self.tls:
                from tests.certs import write_pem  # cryptography: only when TLS is wanted

                self.tls_cert, self.tls_key = write_pem(self._workdir)
            for _ in range(START_TRIES):
                try:
                    self._spawn_and_wait()
                    return
                except _PortShared:
                    self._terminate()  # another server answers on our port: pick new ports
            self._fail(f"every port tried in {START_TRIES} starts was shared with another server")
        except BaseException:
            self.stop()
            raise

    def _spawn_and_wait(self) -> None:
        assert self._workdir is not None
        hosts = [self.host] if self.alt_host is None else [self.host, self.alt_host]
        self.port = free_port(hosts)
        taken = {self.port}
        if self.alt_host is not None:
            self.alt_port = free_port(hosts, exclude=taken)
            taken.add(self.alt_port)
        if self.tls:
            self.tls_port = free_port(hosts, exclude=taken)
            taken.add(self.tls_port)
            if self.alt_host is not None:
                self.alt_tls_port = free_port(hosts, exclude=taken)
        self._log = self._workdir / "turnserver.log"
        began = time.monotonic()
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
            )
        self._wait_ready(began + READY_TIMEOUT)
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """SIGTERM coturn by pid, SIGKILL it after :data:`STOP_TIMEOUT` seconds; idempotent.

        A scratch directory this object made itself is removed (with the log); one passed
        in as ``workdir`` is left for inspection.
        """
        self._terminate()
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self.tls_cert = self.tls_key = None
            self._own_workdir = False

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)

    def output(self) -> str:
        """Everything coturn has logged so far."""
        if self._log is None or not self._log.exists():
            return ""
        return self._log.read_text(errors="replace")

    def __enter__(self) -> Coturn:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._process is not None else "stopped"
        return f"<Coturn {self.host}:{self.port} realm={self.realm} {state}>"

    # -- readiness ---------------------------------------------------------------------------

    def _wait_ready(self, deadline: float) -> None:
        """Probe every listener (UDP, TCP, TLS) until each answers with our realm."""
        pending = [(addr, "udp") for addr in self.listening_addresses]
        if self.tcp:
            pending += [(addr, "tcp") for addr in self.listening_addresses]
        pending += [(addr, "tls") for addr in self.tls_listening_addresses]
        tls_context = self.client_ssl_context() if self.tls else None
        tries = 0
        last = "no answer yet"
        while pending:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                self._fail(f"turnserver exited with status {process.returncode}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(
                    f"turnserver not ready after {READY_TIMEOUT} s and {tries} probes "
                    f"(still waiting for {pending}; last: {last})"
                )
            address, transport = pending[0]
            tries += 1
            try:
                if transport == "tls":
                    assert tls_context is not None
                    realm = _probe_tls(address, tls_context, min(remaining, 0.5), self.alternate)
                else:
                    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
                    realm = _probe(address, kind, min(remaining, 0.2), self.alternate)
            except (OSError, stun.ParseError) as exc:
                realm, last = None, f"{type(exc).__name__}: {exc}"
            if realm == self.realm or (realm is _REDIRECTED and self.alternate is not None):
                pending.pop(0)
                continue
            if realm is not None:
                raise _PortShared(f"{address} answered with realm {realm!r}, not {self.realm!r}")
            # Not listening yet: give coturn a moment, noticing at once if it exits.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(PROBE_INTERVAL)

    def _fail(self, reason: str) -> NoReturn:
        raise CoturnError(
            f"{reason}\ncommand: {' '.join(self.command())}\n--- coturn output ---\n{self.output()}"
        )


def _probe_request() -> stun.Message:
    return stun.Message(
        stun.Method.ALLOCATE,
        stun.Class.REQUEST,
        attributes=[(stun.Attr.REQUESTED_TRANSPORT, 17)],
    )


_REDIRECTED = "<300 to the configured alternate server>"


def _probe(
    address: tuple[str, int], kind: int, timeout: float, alternate: tuple[str, int] | None
) -> str | None:
    """Send one unauthenticated Allocate; return the REALM of a 401 answer (or
    :data:`_REDIRECTED` for a 300 naming ``alternate``), else None."""
    request = _probe_request()
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(request.encode())
        data = sock.recv(4096) if kind == socket.SOCK_DGRAM else _recv_message(sock)
    return _realm_of_401(request, data, alternate)


def _probe_tls(
    address: tuple[str, int],
    context: ssl.SSLContext,
    timeout: float,
    alternate: tuple[str, int] | None,
) -> str | None:
    """:func:`_probe` over TLS (``ssl.SSLError`` is an ``OSError``: not ready, or no TLS).

    The host name checked is "localhost", which the certificate names for every address.
    """
    request = _probe_request()
    with (
        socket.create_connection(address, timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(request.encode())
        data = _recv_message(sock)
    return _realm_of_401(request, data, alternate)


def _recv_message(sock: socket.socket) -> bytes:
    data = _recv_exactly(sock, 20)
    return data + _recv_exactly(sock, int.from_bytes(data[2:4], "big"))


def _realm_of_401(
    request: stun.Message, data: bytes, alternate: tuple[str, int] | None = None
) -> str | None:
    response = stun.decode(data)
    if response.transaction_id != request.transaction_id or response.cls != stun.Class.ERROR:
        return None
    error = response.get(stun.Attr.ERROR_CODE)
    if error is not None and error[0] == 300 and alternate is not None:
        redirect = response.get(stun.Attr.ALTERNATE_SERVER)
        return _REDIRECTED if redirect == alternate else None
    if error is None or error[0] != 401:
        return None
    realm: str | None = response.get(stun.Attr.REALM)
    return realm


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("connection closed mid-message")
        data += chunk
    return data
