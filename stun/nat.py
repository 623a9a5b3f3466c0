"""NAT behaviour discovery (RFC 5780 sections 4.3 and 4.4) against an RFC 5780 server.

Mapping is probed from one socket: test I asks the primary address, test II the alternate
IP with the primary port, test III the alternate IP and port, and the mapped addresses
they report are compared. Filtering is probed from a second, fresh socket that has only
ever talked to the primary address (so that the mapping tests cannot open its filter):
test II asks for an answer from the other IP and port, test III from the other port only.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from enum import StrEnum

from .attributes import Address, Attr, ChangeRequest
from .client import StunClient, resolve
from .errors import StunError, TransactionTimeout
from .message import Class, Message, Method
from .uri import ServerAddress, as_server


class Behavior(StrEnum):
    """How a NAT maps or filters, per RFC 4787 and RFC 5780."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


@dataclass(frozen=True, slots=True)
class NatReport:
    """What discovery found."""

    local_address: Address
    """Where the mapping tests were sent from."""
    mapped_address: Address
    """That socket's address as the server saw it (test I)."""
    other_address: Address
    """The server's alternate address (OTHER-ADDRESS)."""
    mapping: Behavior
    filtering: Behavior

    @property
    def behind_nat(self) -> bool:
        """False when the server saw our own address: no NAT in between."""
        return self.mapped_address != self.local_address


class NotRfc5780Error(StunError):
    """The server does not support RFC 5780 (no OTHER-ADDRESS in its answer)."""


def _binding(change: int = 0) -> Message:
    attributes = [(Attr.CHANGE_REQUEST, change)] if change else []
    return Message(Method.BINDING, Class.REQUEST, attributes=attributes)


def _mapped(response: Message) -> Address:
    mapped = response.get(Attr.XOR_MAPPED_ADDRESS) or response.get(Attr.MAPPED_ADDRESS)
    if mapped is None:
        raise StunError("the Binding response carries no mapped address")
    return mapped  # type: ignore[no-any-return]


def _source_address(server: Address, family: int) -> str:
    """The local IP the kernel would send from towards ``server`` (no packet is sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(server)
        return str(probe.getsockname()[0])


async def discover(
    server: str | ServerAddress | Address,
    *,
    local_address: Address | None = None,
    timeout: float = 3.0,
) -> NatReport:
    """Find the mapping and filtering behaviour of the NAT between us and ``server``.

    ``timeout`` bounds each request; the filtering tests that get no answer take that
    long to conclude. Raises :class:`NotRfc5780Error` if the server has no alternate
    address, :class:`~stun.TransactionTimeout` if the primary address does not answer.
    """
    target = as_server(server, "udp")
    primary = await resolve(target.host, target.port, "udp")
    family = socket.AF_INET6 if ":" in primary[0] else socket.AF_INET
    bind = local_address or ("::" if family == socket.AF_INET6 else "0.0.0.0", 0)
    mapping_client = await StunClient.open_udp(bind, family=family)
    filtering_client = await StunClient.open_udp(bind, family=family)
    async with mapping_client, filtering_client:
        first = await mapping_client.request(_binding(), primary, timeout=timeout)
        other = first.get(Attr.OTHER_ADDRESS)
        if other is None:
            raise NotRfc5780Error(f"{target} is not an RFC 5780 server (no OTHER-ADDRESS)")
        mapped = _mapped(first)
        wildcard = local_address is None or local_address[0] in ("0.0.0.0", "::", "")
        local_ip = _source_address(primary, family) if wildcard else bind[0]
        local = (local_ip, mapping_client.local_address[1])
        mapping, filtering = await asyncio.gather(
            _mapping_behavior(mapping_client, mapped, primary, other, timeout),
            _filtering_behavior(filtering_client, primary, timeout),
        )
    return NatReport(local, mapped, other, mapping, filtering)


async def _mapping_behavior(
    client: StunClient, mapped: Address, primary: Address, other: Address, timeout: float
) -> Behavior:
    alternate_ip = (other[0], primary[1])
    second = _mapped(await client.request(_binding(), alternate_ip, timeout=timeout))
    if second == mapped:
        return Behavior.ENDPOINT_INDEPENDENT
    third = _mapped(await client.request(_binding(), other, timeout=timeout))
    if third == second:
        return Behavior.ADDRESS_DEPENDENT
    return Behavior.ADDRESS_AND_PORT_DEPENDENT


async def _answered(client: StunClient, request: Message, server: Address, timeout: float) -> bool:
    try:
        await client.request(request, server, timeout=timeout)
    except TransactionTimeout:
        return False
    return True


async def _filtering_behavior(client: StunClient, primary: Address, timeout: float) -> Behavior:
    await client.request(_binding(), primary, timeout=timeout)
    change_both = ChangeRequest.CHANGE_IP | ChangeRequest.CHANGE_PORT
    if await _answered(client, _binding(change_both), primary, timeout):
        return Behavior.ENDPOINT_INDEPENDENT
    if await _answered(client, _binding(ChangeRequest.CHANGE_PORT), primary, timeout):
        return Behavior.ADDRESS_DEPENDENT
    return Behavior.ADDRESS_AND_PORT_DEPENDENT
