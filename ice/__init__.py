"""ICE (RFC 8445) agent. Under construction."""
