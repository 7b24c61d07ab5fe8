"""Stripe webhook signatures, checked exactly as Stripe signs them.

`stripe.WebhookSignature.verify_header` checks one secret per call and only
rejects timestamps that are too old; the contract also rejects timestamps
from the future and accepts any of several secrets, so this parses the
header once and compares every `v1` value against every secret in constant
time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from core.processor import SignatureError

# Stripe sends one `t` and a few `v1`s; a header this long is not Stripe's.
MAX_HEADER_LENGTH = 4096


def verify(payload: bytes, header: str | None, secrets: Sequence[str], *,
           tolerance: int, now: float) -> None:
    if not secrets:
        raise SignatureError("no webhook secret is configured")
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    if len(header) > MAX_HEADER_LENGTH:
        raise SignatureError("Stripe-Signature header too long")
    timestamp: str | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value.encode("utf-8", "replace"))
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise SignatureError("no valid timestamp in Stripe-Signature")
    if not signatures:
        raise SignatureError("no v1 signature in Stripe-Signature")
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError("timestamp outside the tolerance")
    signed = timestamp.encode() + b"." + payload
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()
        for signature in signatures:
            # No early exit: every comparison runs, each in constant time.
            matched |= hmac.compare_digest(expected, signature)
    if not matched:
        raise SignatureError("no signature matches")


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """A `Stripe-Signature` value as Stripe makes it (the tests and the sandbox use it)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"
