"""Proof of the cluster secret: an HMAC challenge in both directions.

The listener sends a random nonce; the connecting side answers with
``HMAC(secret, "client" + nonce)`` and a nonce of its own; the listener
checks it and answers ``HMAC(secret, "server" + that nonce)``, which the
connecting side checks. The secret never crosses the wire, a recorded
exchange is useless against a fresh nonce, and each side knows the other
holds the secret before it reads a single frame.
"""

from __future__ import annotations

import hashlib
import hmac

NONCE_SIZE = 32
PROOF_SIZE = 32

CLIENT = b"shardline-client"
SERVER = b"shardline-server"


def proof(secret: bytes, role: bytes, nonce: bytes) -> bytes:
    return hmac.new(secret, role + nonce, hashlib.sha256).digest()


def verify(secret: bytes, role: bytes, nonce: bytes, claimed: bytes) -> bool:
    """Constant-time check of a peer's proof."""
    return hmac.compare_digest(proof(secret, role, nonce), claimed)
