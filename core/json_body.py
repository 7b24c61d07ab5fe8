"""A processor's webhook body read as JSON that PostgreSQL can store: what every
processor's `parse` shares (Stripe's one event, GoCardless's batch alike).

orjson reads first (a processor's own bodies); what it refuses and JSON allows (an
integer past 64 bits, nesting past 1024, an escaped lone surrogate) is read again by the
standard library, whose answer is final. NaN and Infinity are refused, as jsonb refuses
them. A value read is storable unless some string of it (keys included, at any depth)
holds `\\u0000`, which no PostgreSQL text or jsonb holds, or a lone surrogate.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# Surrogates are never valid alone (json.loads joins an escaped pair into the one
# character it stands for).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read(body: bytes) -> Any:
    """The body's JSON value; ValueError (a UnicodeDecodeError among them) or
    RecursionError (tens of thousands of nested brackets) when it is not UTF-8 JSON."""
    text = body.decode("utf-8")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, parse_constant=_not_json)


def may_be_unstorable(body: bytes) -> bool:
    """Raw NUL is not JSON and a lone surrogate is not UTF-8: only a \\u escape can bring
    either, so a body without one (a processor's own) needs no walk."""
    return b"\\u" in body


def storable(value: Any) -> bool:
    """No string at any depth holds what PostgreSQL refuses; a loop, not recursion, since
    json.loads accepts nesting deeper than Python's stack."""
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if UNSTORABLE.search(item):
                return False
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True
