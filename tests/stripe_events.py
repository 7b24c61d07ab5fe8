"""Stripe-shaped events for tests, built from ../shared/stripe-fixtures and signed as Stripe signs."""

from __future__ import annotations

import copy
import json
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from handlers.signature import sign

# A copy of ../shared/stripe-fixtures/objects.json (Stripe's own OpenAPI fixtures),
# kept in the repository so a clone tests on its own.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe_objects.json"
SECRET = "whsec_test_primary"


@cache
def _objects() -> dict[str, Any]:
    return json.loads(FIXTURES.read_text())  # type: ignore[no-any-return]


def stripe_object(kind: str, **overrides: Any) -> dict[str, Any]:
    obj = copy.deepcopy(_objects()[kind])
    obj.update(overrides)
    return obj


def event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    return stripe_object(
        "event",
        id=event_id or f"evt_{uuid.uuid4().hex[:24]}",
        type=event_type,
        created=int(time.time()),
        data={"object": obj},
    )


def signed(body: bytes | dict[str, Any], secret: str = SECRET,
           timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    header = sign(raw, secret, int(time.time()) if timestamp is None else timestamp)
    return raw, {"Stripe-Signature": header, "Content-Type": "application/json"}
