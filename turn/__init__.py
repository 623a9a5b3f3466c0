"""TURN (RFC 8656) client: allocations, permissions, channels. Under construction."""
