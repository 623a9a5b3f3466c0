"""Network namespace plumbing for the NAT lab: run ``ip`` / ``iptables`` in a namespace,
call Python code inside one, and find out whether this machine can host the lab at all.

Everything here touches only the namespaces the lab names; nothing changes the host's own
network configuration.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT = 10.0
"""Seconds one ``ip`` or ``iptables-restore`` call may take (each takes a few ms)."""

TOOLS = ("ip", "iptables", "iptables-restore", "turnserver")


class NetnsError(RuntimeError):
    """A lab command failed; the message carries the command and its output."""


def run(args: Sequence[str], *, stdin: str | None = None, netns: str | None = None) -> str:
    """Run a command (inside ``netns`` when given) and return its stdout; raise
    :class:`NetnsError` with its output when it fails."""
    command = list(args) if netns is None else ["ip", "netns", "exec", netns, *args]
    try:
        done = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(command)}: {exc}") from exc
    if done.returncode != 0:
        raise NetnsError(
            f"{' '.join(command)} exited with {done.returncode}\n"
            f"stdin:\n{stdin or ''}\nstderr:\n{done.stderr}"
        )
    return done.stdout


def ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    """Run ``ip`` commands (one per line, without the leading ``ip``) in one process."""
    if lines:
        run(["ip", *(("-n", netns) if netns else ()), "-batch", "-"], stdin="\n".join(lines) + "\n")


def existing() -> set[str]:
    """The names of the namespaces that exist now."""
    try:
        return set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return set()


def delete(names: Sequence[str]) -> list[str]:
    """Delete the namespaces among ``names`` that exist (their links go with them);
    return the ones that could not be deleted."""
    present = existing()
    left = []
    for name in names:
        if name in present:
            try:
                run(["ip", "netns", "delete", name])
            except NetnsError:
                left.append(name)
    return left


_libc = ctypes.CDLL(None, use_errno=True)


def call_in(netns: str, function: Callable[[], T]) -> T:
    """Call ``function`` on a fresh thread that has entered ``netns``: sockets it opens
    and processes it spawns live in that namespace. The caller's thread stays put."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def enter_and_call() -> None:
        try:
            fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns({netns}): {os.strerror(errno)}")
            finally:
                os.close(fd)
            outcome.append(function())
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=enter_and_call, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def unavailable() -> str | None:
    """Why this machine cannot host the lab (not root, a tool missing, namespaces,
    veth or iptables NAT unusable), or None when it can."""
    if os.geteuid() != 0:
        return "the NAT lab needs root (network namespaces, veth pairs and iptables)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"the NAT lab needs {', '.join(missing)} (apt install iproute2 iptables coturn)"
    probe = f"nlprobe{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        run(["ip", "netns", "add", probe])
    except NetnsError as exc:
        return f"network namespaces are unavailable here: {exc}"
    try:
        ip_batch(["link add va type veth peer name vb", "link add vbr type bridge"], probe)
        run(["iptables-restore"], stdin=_PROBE_RULES, netns=probe)
    except NetnsError as exc:
        return f"veth, bridge or iptables NAT is unavailable here: {exc}"
    finally:
        delete([probe])
    return None


_PROBE_RULES = """\
*nat
-A POSTROUTING -o va -j MASQUERADE --random-fully
COMMIT
*raw
-A PREROUTING -i va -m statistic --mode random --probability 0.1 -j DROP
-A PREROUTING -i va -j NFQUEUE --queue-num 1
COMMIT
"""
