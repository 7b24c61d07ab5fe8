"""GoCardless webhook signatures: `Webhook-Signature` is the lowercase hex HMAC-SHA256 of
the raw body under the endpoint's secret (CONTRACT §3a).

`gocardless_pro.Webhook.parse` checks one secret and parses the body in the same call;
settle accepts any of several secrets (rotation) and parses the batch itself
(`events.read_batch`), so this compares against every secret in constant time, with no
early exit, and parses nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from core.processor import SignatureError

# A SHA-256 digest in hex is 64 characters; anything much longer is not GoCardless's.
MAX_HEADER_LENGTH = 256


def verify(payload: bytes, header: str | None, secrets: Sequence[str]) -> None:
    if not secrets:
        raise SignatureError("no webhook secret is configured")
    if not header:
        raise SignatureError("missing Webhook-Signature header")
    if len(header) > MAX_HEADER_LENGTH:
        raise SignatureError("Webhook-Signature header too long")
    given = header.strip().encode("utf-8", "replace")
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise SignatureError("no signature matches")


def sign(payload: bytes, secret: str) -> str:
    """A `Webhook-Signature` value as GoCardless makes it (the tests and the stand-in)."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
