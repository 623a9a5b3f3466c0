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
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import NoReturn

import stun

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

    The username is ``<expiry unix time>:<user>``, the password the base64 HMAC-SHA1 of
    that username keyed with the shared secret.
    """
    username = f"{int(time.time() + ttl)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


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
        self.host = host
        self.alt_host: str | None = alt_host if rfc5780 else None
        self.port = 0
        self.alt_port: int | None = None
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
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def rest_credentials(self, user: str, ttl: float = 3600.0) -> tuple[str, str]:
        """TURN REST API credentials for this server's shared secret."""
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
            "--no-tls",
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
        if self.alt_host is not None:
            self.alt_port = free_port(hosts, exclude={self.port})
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
        """Probe every listener (UDP and TCP) until each answers with our realm."""
        pending = [(addr, socket.SOCK_DGRAM) for addr in self.listening_addresses]
        if self.tcp:
            pending += [(addr, socket.SOCK_STREAM) for addr in self.listening_addresses]
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
            address, kind = pending[0]
            tries += 1
            try:
                realm = _probe(address, kind, min(remaining, 0.2))
            except (OSError, stun.ParseError) as exc:
                realm, last = None, f"{type(exc).__name__}: {exc}"
            if realm == self.realm:
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


def _probe(address: tuple[str, int], kind: int, timeout: float) -> str | None:
    """Send one unauthenticated Allocate; return the REALM of a 401 answer, else None."""
    request = stun.Message(
        stun.Method.ALLOCATE,
        stun.Class.REQUEST,
        attributes=[(stun.Attr.REQUESTED_TRANSPORT, 17)],
    )
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(request.encode())
        if kind == socket.SOCK_DGRAM:
            data = sock.recv(4096)
        else:
            data = _recv_exactly(sock, 20)
            data += _recv_exactly(sock, int.from_bytes(data[2:4], "big"))
    response = stun.decode(data)
    if response.transaction_id != request.transaction_id or response.cls != stun.Class.ERROR:
        return None
    error = response.get(stun.Attr.ERROR_CODE)
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
