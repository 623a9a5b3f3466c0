"""pion/ice as an independent ICE peer: build ``tests/interop/pion`` (our small Go
program) offline in GOPATH mode against the Debian packages, run it, and talk to it
in line-based JSON over its stdin and stdout (the protocol is in ``pion/main.go``).

pion 2.3 paces its checks by a 200 ms check interval (not Ta), so a controlling pion
nominates only after a few hundred milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("pion")
GOCODE = Path(os.environ.get("ICESTACK_GOCODE", "/usr/share/gocode"))
"""Where Debian's golang-*-dev packages put their sources (a GOPATH root)."""
PION_ICE = GOCODE / "src/github.com/pion/ice/v2"


def missing() -> str | None:
    """Why the pion peer cannot be built here, or None."""
    if shutil.which("go") is None:
        return "go is not installed (apt install golang-go)"
    if not PION_ICE.is_dir():
        package = "golang-github-pion-ice.v2-dev"
        return f"pion/ice is not installed ({PION_ICE} is missing; apt install {package})"
    return None


def build(workdir: Path) -> Path:
    """Compile the peer into ``workdir``; the executable. Raises RuntimeError with the
    compiler output when it fails."""
    binary = workdir / "pionpeer"
    env = dict(
        os.environ,
        GO111MODULE="off",
        GOPATH=f"{workdir / 'gopath'}{os.pathsep}{GOCODE}",
        GOFLAGS="",
    )
    if shutil.which(env.get("CC", "gcc")) is None:
        env["CGO_ENABLED"] = "0"  # pure Go (slower: the standard library is rebuilt)
    env.setdefault("GOCACHE", str(workdir / "gocache"))
    result = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"go build failed ({result.returncode}):\n{result.stderr}")
    return binary


class PionError(Exception):
    """The pion peer reported an error or exited."""


class PionPeer:
    """One running pion agent. Events are read in order by the ``expect``/``receive``
    calls (one reader at a time); candidates and states seen on the way are kept."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.ufrag = ""
        self.pwd = ""
        self.candidates: list[str] = []
        """pion's candidates as ``candidate:...`` lines."""
        self.states: list[str] = []
        self.received: list[bytes] = []

    @classmethod
    async def start(cls, binary: Path, controlling: bool, workdir: Path) -> PionPeer:
        """Start an agent (it gathers at once); returns once its credentials are known."""
        log = workdir / "pion.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                str(binary),
                *(["-controlling"] if controlling else []),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        peer = cls(process, log)
        try:
            hello = await peer.expect("credentials")
        except BaseException:
            await peer.close()
            raise
        peer.ufrag, peer.pwd = hello["ufrag"], hello["pwd"]
        return peer

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")

    def give_credentials(self, ufrag: str, pwd: str) -> None:
        """Our credentials: pion starts its checks (Dial or Accept)."""
        self._send({"type": "credentials", "ufrag": ufrag, "pwd": pwd})

    def give_candidate(self, line: str) -> None:
        """One of our candidates as a ``candidate:...`` line."""
        self._send({"type": "candidate", "candidate": line})

    def send(self, data: bytes) -> None:
        """A datagram to us over pion's selected pair (pion must be connected)."""
        self._send({"type": "send", "data": base64.b64encode(data).decode()})

    async def expect(self, kind: str) -> dict[str, Any]:
        """Read events up to the next one of type ``kind``; raises PionError on an error
        event or when pion exits."""
        assert self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise PionError(f"pion exited ({await self.process.wait()}): {self.output()}")
            event: dict[str, Any] = json.loads(line)
            found = event["type"]
            if found == "error":
                raise PionError(event["error"])
            if found == "candidate":
                self.candidates.append(event["candidate"])
            elif found == "state":
                self.states.append(event["state"])
            elif found == "recv":
                self.received.append(base64.b64decode(event["data"]))
            if found == kind:
                return event

    async def gathered(self) -> list[str]:
        """pion's candidates once it has gathered all of them."""
        await self.expect("gathered")
        return self.candidates

    async def reach(self, state: str) -> None:
        """Read events until pion has reported the connection state ``state`` (pion
        spells them ``Checking``, ``Connected``, ...)."""
        while state not in self.states:
            await self.expect("state")

    async def receive(self) -> bytes:
        """The next datagram pion received from us."""
        if not self.received:
            await self.expect("recv")
        return self.received.pop(0)

    async def close(self) -> None:
        """End pion's input (it closes its agent and exits); kill it if it does not."""
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def output(self) -> str:
        """pion's log (stderr), for failure reports."""
        return self.log.read_text(errors="replace")
