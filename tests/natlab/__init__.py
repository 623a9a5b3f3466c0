"""The NAT lab: network namespaces, veth pairs and a bridge make a public segment with
coturn and our RFC 5780 STUN server, and private hosts behind real kernel NAT routers
(cone, symmetric, none, UDP-blocked); peers in separate processes connect across them.

Run as root: ``python -m pytest -q tests/natlab`` (``-m natlab`` selects these tests
anywhere); see :mod:`tests.natlab.topology` for the address plan.
"""
