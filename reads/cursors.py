"""Keyset cursors for lists, newest first: where the last page ended, opaque to callers.

A cursor is the last row's time and key; a list asks for rows before it in
`(time, key)` order, so a page costs the same whatever its depth. Anything a
caller sends that this module did not make is `422 cursor_invalid`.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

from core.errors import Invalid

BIGINT_MAX = 2**63 - 1
MAX_KEY_LENGTH = 255
# What no key of settle's holds (ids have no control characters, CONTRACT §5), and what
# PostgreSQL refuses in a text parameter (\x00) or cannot encode (a lone surrogate).
NOT_IN_A_KEY = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def encode_cursor(at: datetime, key: int | str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{key}".encode()).decode()


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, sep, key = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        at = datetime.fromisoformat(stamp)
        # Only what encode_cursor makes: an aware time and a key.
        if not sep or at.tzinfo is None or not 0 < len(key) <= MAX_KEY_LENGTH \
                or NOT_IN_A_KEY.search(key):
            raise ValueError(cursor)
        return at.astimezone(UTC), key
    except (ValueError, OverflowError):
        raise Invalid("cursor_invalid", "next is not a cursor this service gave") from None


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(time, text key) of a cursor."""
    return _decode(cursor)


def decode_row_cursor(cursor: str) -> tuple[datetime, int]:
    """(time, row id) of a cursor whose key is a bigint row id."""
    at, key = _decode(cursor)
    if not (key.isascii() and key.isdigit()) or int(key) > BIGINT_MAX:
        raise Invalid("cursor_invalid", "next is not a cursor this service gave")
    return at, int(key)
