"""The sans-I/O mDNS endpoint (ice.mdns.endpoint, .responder, .resolver) on a virtual clock:
names, answers (multicast, QU, legacy unicast, the one-second rule), announcements,
goodbyes, lookups (retransmission, deadlines, sharing, the cache) and what gets dropped."""

from __future__ import annotations

import random
import re
import socket
from dataclasses import replace

import pytest

from ice.mdns import (
    MDNS_PORT,
    Link,
    MdnsEndpoint,
    MdnsError,
    MdnsStats,
    Resolved,
    ResolveFailed,
    Transmit,
    is_mdns_name,
    new_name,
)
from ice.mdns.message import (
    FLAG_AA,
    FLAG_QR,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    Message,
    Question,
    Record,
    address_record,
    encode,
    parse,
)
from ice.mdns.resolver import Resolver
from stun.attributes import Address

LINK: Link = (socket.AF_INET, 3)
OTHER_LINK: Link = (socket.AF_INET, 4)
PEER: Address = ("192.0.2.7", MDNS_PORT)
LEGACY_PEER: Address = ("192.0.2.7", 40000)
IP = "192.0.2.1"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.local")
UNKNOWN = "00000000-0000-4000-8000-000000000000.local"

Sent = tuple[Message, Link | None, Address | None]


def make(**options: int) -> MdnsEndpoint:
    return MdnsEndpoint(rng=random.Random(7), **options)


def sent(endpoint: MdnsEndpoint) -> list[Sent]:
    return [(parse(t.data), t.link, t.remote) for t in endpoint.poll_transmits()]


def query(*questions: Question, ident: int = 0) -> bytes:
    return encode(Message(ident, questions=questions))


def ask(name: str, rtype: int = TYPE_A, unicast: bool = False, ident: int = 0) -> bytes:
    return query(Question(name, rtype, unicast), ident=ident)


def answer(*records: Record) -> bytes:
    return encode(Message(flags=FLAG_QR | FLAG_AA, answers=records))


def published(ip: str = IP, **options: int) -> tuple[MdnsEndpoint, str]:
    """An endpoint that has published ``ip``, without announcements, and sent nothing yet."""
    endpoint = make(announcements=0, **options)
    return endpoint, endpoint.responder.register(0.0, ip)


def the_record(name: str, ip: str = IP, ttl: int = 120, flush: bool = True) -> Record:
    return address_record(name, ip, ttl, cache_flush=flush)


# -- names ----------------------------------------------------------------------------------


def test_names_are_uuid4_under_local_and_drawn_from_the_given_rng() -> None:
    first = new_name(random.Random(1))
    assert UUID4.fullmatch(first)
    assert new_name(random.Random(1)) == first
    assert is_mdns_name(first) and is_mdns_name(first.upper())


@pytest.mark.parametrize(
    "name",
    ["printer.local", "x" + UNKNOWN, UNKNOWN + ".", UNKNOWN[:-6] + ".lan", UNKNOWN[:-6], ""],
)
def test_only_uuid_names_count_as_mdns_ice_names(name: str) -> None:
    assert not is_mdns_name(name)


def test_each_address_gets_its_own_name_and_keeps_it() -> None:
    responder = make().responder
    v4 = responder.register(0.0, IP)
    v6 = responder.register(0.0, "2001:DB8:0::1")
    assert UUID4.fullmatch(v4) and UUID4.fullmatch(v6) and v4 != v6
    assert responder.register(0.5, IP) == v4
    assert responder.register(0.5, "2001:db8::1") == v6
    assert responder.names == {v4: IP, v6: "2001:db8::1"}


@pytest.mark.parametrize("ip", ["host.local", "fe80::1%eth0", "", "1.2.3"])
def test_registering_a_non_ip_fails(ip: str) -> None:
    with pytest.raises(MdnsError):
        make().responder.register(0.0, ip)


# -- announcements and goodbyes -------------------------------------------------------------


def test_a_new_name_is_announced_twice_a_second_apart() -> None:
    endpoint = make()
    name = endpoint.responder.register(10.0, IP)
    announcement = Message(flags=FLAG_QR | FLAG_AA, answers=(the_record(name),))
    assert sent(endpoint) == [(announcement, None, None)]
    assert endpoint.poll_timeout() == 11.0
    endpoint.handle_timeout(10.9)
    assert sent(endpoint) == []
    endpoint.handle_timeout(11.0)
    assert sent(endpoint) == [(announcement, None, None)]
    assert endpoint.poll_timeout() is None
    assert endpoint.stats.announcements_sent == 2


def test_without_announcements_registering_sends_nothing() -> None:
    endpoint, _ = published()
    assert sent(endpoint) == [] and endpoint.poll_timeout() is None


def test_unregister_sends_a_goodbye_and_stops_answering() -> None:
    endpoint, name = published()
    endpoint.responder.unregister(name.upper())
    goodbye = Message(flags=FLAG_QR | FLAG_AA, answers=(the_record(name, ttl=0),))
    assert sent(endpoint) == [(goodbye, None, None)]
    endpoint.handle_datagram(1.0, ask(name), PEER, LINK)
    endpoint.responder.unregister(name)  # unknown now: ignored
    assert sent(endpoint) == [] and endpoint.responder.names == {}
    assert endpoint.responder.register(2.0, IP) != name  # a later registration: a new name


def test_close_says_goodbye_for_every_name() -> None:
    endpoint = make(announcements=0)
    names = [endpoint.responder.register(0.0, ip) for ip in (IP, "2001:db8::1")]
    endpoint.responder.close()
    goodbyes = [message.answers[0] for message, _, _ in sent(endpoint)]
    assert [(r.name, r.ttl) for r in goodbyes] == [(name, 0) for name in names]
    assert endpoint.stats.goodbyes_sent == 2


# -- answers --------------------------------------------------------------------------------


def test_a_query_for_our_name_is_answered_by_multicast_on_its_link() -> None:
    endpoint, name = published()
    endpoint.handle_datagram(1.0, ask(name.upper()), PEER, LINK)
    reply = Message(flags=FLAG_QR | FLAG_AA, answers=(the_record(name),))
    assert sent(endpoint) == [(reply, LINK, None)]
    assert endpoint.stats.answers_sent == 1


@pytest.mark.parametrize(
    "question",
    [
        Question(UNKNOWN, TYPE_A),
        Question("NAME", TYPE_AAAA),  # our name is IPv4 only
        Question("NAME", 16),
        Question("NAME", TYPE_A, qclass=3),
    ],
)
def test_queries_that_are_not_about_our_records_get_no_answer(question: Question) -> None:
    endpoint, name = published()
    asked = replace(question, name=name) if question.name == "NAME" else question
    endpoint.handle_datagram(1.0, query(asked), PEER, LINK)
    assert sent(endpoint) == []


def test_any_type_and_class_and_several_questions() -> None:
    endpoint, name = published()
    v6 = endpoint.responder.register(0.0, "2001:db8::1")
    questions = (
        Question(name, TYPE_ANY, qclass=255),
        Question(UNKNOWN, TYPE_A),
        Question(v6, TYPE_AAAA),
    )
    endpoint.handle_datagram(1.0, query(*questions), PEER, LINK)
    [(reply, link, remote)] = sent(endpoint)
    assert reply.answers == (the_record(name), the_record(v6, "2001:db8::1"))
    assert (link, remote) == (LINK, None)


def test_a_record_is_multicast_at_most_once_a_second_per_link() -> None:
    endpoint, name = published()
    endpoint.handle_datagram(1.0, ask(name), PEER, LINK)
    endpoint.handle_datagram(1.5, ask(name), PEER, OTHER_LINK)
    assert [link for _, link, _ in sent(endpoint)] == [LINK, OTHER_LINK]
    endpoint.handle_datagram(1.9, ask(name), PEER, LINK)
    assert sent(endpoint) == [] and endpoint.stats.answers_held_back == 1
    endpoint.handle_datagram(2.0, ask(name), PEER, LINK)
    assert [link for _, link, _ in sent(endpoint)] == [LINK]


def test_announcements_do_not_hold_back_the_answer_to_a_query() -> None:
    endpoint = make()
    name = endpoint.responder.register(0.0, IP)
    sent(endpoint)
    endpoint.handle_datagram(0.1, ask(name), PEER, LINK)
    assert [link for _, link, _ in sent(endpoint)] == [LINK]


def test_a_qu_question_is_answered_by_unicast_once_the_record_was_multicast_recently() -> None:
    endpoint, name = published()
    endpoint.handle_datagram(1.0, ask(name, unicast=True), PEER, LINK)
    assert [(link, remote) for _, link, remote in sent(endpoint)] == [(LINK, None)]
    endpoint.handle_datagram(1.2, ask(name, unicast=True), PEER, LINK)
    endpoint.handle_datagram(30.9, ask(name, unicast=True), PEER, LINK)  # < ttl / 4 after
    assert [(link, remote) for _, link, remote in sent(endpoint)] == [(LINK, PEER)] * 2
    endpoint.handle_datagram(31.0, ask(name, unicast=True), PEER, LINK)
    assert [(link, remote) for _, link, remote in sent(endpoint)] == [(LINK, None)]


def test_a_legacy_query_gets_a_unicast_reply_echoing_id_and_question() -> None:
    endpoint, name = published()
    question = Question(name.upper(), TYPE_A)
    endpoint.handle_datagram(1.0, query(question, ident=0x1234), LEGACY_PEER, LINK)
    [(reply, link, remote)] = sent(endpoint)
    assert (link, remote) == (LINK, LEGACY_PEER)
    assert reply == Message(
        0x1234,
        FLAG_QR | FLAG_AA,
        (question,),
        (the_record(name.upper(), ttl=10, flush=False),),
    )


# -- what is dropped ------------------------------------------------------------------------


def test_malformed_and_ignorable_datagrams_are_counted_and_dropped() -> None:
    endpoint, name = published()
    endpoint.handle_datagram(1.0, b"\x00" * 11, PEER, LINK)
    endpoint.handle_datagram(1.0, ask(name)[:-1], PEER, LINK)
    with_opcode = bytearray(ask(name))
    with_opcode[2] |= 0x28  # opcode 5 (update)
    endpoint.handle_datagram(1.0, bytes(with_opcode), PEER, LINK)
    with_rcode = bytearray(ask(name))
    with_rcode[3] |= 0x03
    endpoint.handle_datagram(1.0, bytes(with_rcode), PEER, LINK)
    endpoint.handle_datagram(1.0, answer(the_record(UNKNOWN)), LEGACY_PEER, LINK)
    assert sent(endpoint) == []
    stats = endpoint.stats
    assert (stats.received, stats.dropped_malformed, stats.dropped_ignored) == (5, 2, 3)
    endpoint.handle_datagram(1.0, ask(name), PEER, LINK)  # and still answers
    assert len(sent(endpoint)) == 1


# -- lookups --------------------------------------------------------------------------------


def questions_of(messages: list[Sent]) -> list[tuple[Question, ...]]:
    assert all(link is None and remote is None for _, link, remote in messages)
    return [message.questions for message, _, _ in messages]


def test_a_lookup_asks_for_a_and_aaaa_and_retransmits_a_bounded_number_of_times() -> None:
    endpoint = make()
    endpoint.resolver.lookup(100.0, UNKNOWN.upper(), deadline=110.0)
    first = (Question(UNKNOWN, TYPE_A, True), Question(UNKNOWN, TYPE_AAAA, True))
    later = (Question(UNKNOWN, TYPE_A), Question(UNKNOWN, TYPE_AAAA))
    assert questions_of(sent(endpoint)) == [first]
    times = []
    while (deadline := endpoint.poll_timeout()) is not None:
        times.append(deadline)
        endpoint.handle_timeout(deadline)
        if deadline < 110.0:
            assert questions_of(sent(endpoint)) == [later]
    assert times == [101.0, 103.0, 110.0]
    assert endpoint.poll_events() == [ResolveFailed(UNKNOWN)]
    assert endpoint.stats.queries_sent == 3 and endpoint.resolver.pending == frozenset()


def test_no_retransmission_is_scheduled_past_the_deadline() -> None:
    endpoint = make()
    endpoint.resolver.lookup(0.0, UNKNOWN, deadline=0.5)
    assert len(sent(endpoint)) == 1 and endpoint.poll_timeout() == 0.5
    endpoint.handle_timeout(0.5)
    assert sent(endpoint) == [] and endpoint.poll_events() == [ResolveFailed(UNKNOWN)]


def test_concurrent_lookups_of_one_name_share_one_query_and_the_later_deadline() -> None:
    endpoint = make(max_queries=1)
    endpoint.resolver.lookup(0.0, UNKNOWN, deadline=2.0)
    endpoint.resolver.lookup(0.5, UNKNOWN.upper(), deadline=4.0)
    endpoint.resolver.lookup(0.6, UNKNOWN, deadline=1.0)
    assert len(sent(endpoint)) == 1 and endpoint.poll_timeout() == 4.0


def test_an_answer_ends_the_lookup_and_is_cached_for_its_ttl() -> None:
    endpoint = make()
    endpoint.resolver.lookup(0.0, UNKNOWN, deadline=5.0)
    sent(endpoint)
    endpoint.handle_datagram(0.2, answer(the_record(UNKNOWN.upper(), ttl=120)), PEER, LINK)
    assert endpoint.poll_events() == [Resolved(UNKNOWN, (IP,))]
    assert endpoint.poll_timeout() is None
    endpoint.resolver.lookup(120.1, UNKNOWN, deadline=125.0)  # from the cache: no query
    assert endpoint.poll_events() == [Resolved(UNKNOWN, (IP,))] and sent(endpoint) == []
    endpoint.resolver.lookup(120.2, UNKNOWN, deadline=125.0)  # expired: asked again
    assert len(sent(endpoint)) == 1 and endpoint.poll_events() == []


def test_answers_in_the_additional_section_and_both_families() -> None:
    endpoint = make()
    endpoint.resolver.lookup(0.0, UNKNOWN, deadline=5.0)
    response = Message(
        flags=FLAG_QR | FLAG_AA,
        answers=(the_record(UNKNOWN),),
        additionals=(the_record(UNKNOWN, "2001:db8::1"), Record(UNKNOWN, 16, 120, b"\x00")),
    )
    endpoint.handle_datagram(0.1, encode(response), PEER, LINK)
    assert endpoint.poll_events() == [Resolved(UNKNOWN, (IP, "2001:db8::1"))]


def test_responses_from_other_ports_and_for_other_names_are_not_taken() -> None:
    endpoint = make()
    endpoint.resolver.lookup(0.0, UNKNOWN, deadline=5.0)
    other = new_name(random.Random(3))
    endpoint.handle_datagram(0.1, answer(the_record(UNKNOWN)), LEGACY_PEER, LINK)
    endpoint.handle_datagram(0.1, answer(the_record(other)), PEER, LINK)
    assert endpoint.poll_events() == []
    assert endpoint.resolver.cached(0.1, other) == ()  # unasked: not cached


def test_goodbyes_and_cache_flushes_update_the_cache() -> None:
    endpoint = make()
    endpoint.resolver.lookup(0.0, UNKNOWN, deadline=5.0)
    both = (the_record(UNKNOWN, flush=False), the_record(UNKNOWN, "192.0.2.2", flush=False))
    endpoint.handle_datagram(0.1, answer(*both), PEER, LINK)
    assert endpoint.resolver.cached(0.1, UNKNOWN) == (IP, "192.0.2.2")
    endpoint.handle_datagram(0.2, answer(the_record(UNKNOWN, "192.0.2.3")), PEER, LINK)
    assert endpoint.resolver.cached(0.2, UNKNOWN) == ("192.0.2.3",)  # flushed the others
    endpoint.handle_datagram(0.3, answer(the_record(UNKNOWN, "192.0.2.3", ttl=0)), PEER, LINK)
    assert endpoint.resolver.cached(0.3, UNKNOWN) == ()
    endpoint.handle_datagram(0.4, answer(the_record(UNKNOWN)), PEER, LINK)  # forgotten
    assert endpoint.resolver.cached(0.4, UNKNOWN) == ()


def test_lookups_and_the_cache_are_bounded() -> None:
    resolver = Resolver(MdnsStats(), max_lookups=2, max_cache=2)
    names = [new_name(random.Random(i)) for i in range(4)]
    for name in names:
        resolver.lookup(0.0, name, deadline=5.0)
    assert resolver.pending == frozenset(names[:2])
    assert resolver.poll_events() == [ResolveFailed(names[2]), ResolveFailed(names[3])]
    assert len(resolver.poll_transmits()) == 2
    for ttl, name in zip((50, 10), names[:2], strict=True):
        resolver.handle_response(1.0, parse(answer(the_record(name, ttl=ttl))))
    resolver.lookup(2.0, names[2], deadline=5.0)
    resolver.handle_response(2.0, parse(answer(the_record(names[2], ttl=30))))
    # Three cached names for room for two: the one expiring first (names[1]) goes.
    assert [bool(resolver.cached(2.0, name)) for name in names[:3]] == [True, False, True]


# -- two endpoints on one virtual link ------------------------------------------------------


def deliver(transmits: list[Transmit], to: MdnsEndpoint, now: float, source: Address) -> None:
    for transmit in transmits:
        to.handle_datagram(now, transmit.data, source, LINK)


def test_two_endpoints_resolve_each_others_names() -> None:
    alice, bob = make(), MdnsEndpoint(rng=random.Random(8))
    name = alice.responder.register(0.0, "2001:db8::5")
    alice.poll_transmits()  # the announcements: bob was not listening yet
    bob.resolver.lookup(0.1, name, deadline=5.0)
    deliver(bob.poll_transmits(), alice, 0.1, ("192.0.2.9", MDNS_PORT))
    deliver(alice.poll_transmits(), bob, 0.1, ("192.0.2.1", MDNS_PORT))
    assert bob.poll_events() == [Resolved(name, ("2001:db8::5",))]
    assert bob.poll_timeout() is None
