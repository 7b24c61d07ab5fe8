"""A repeated POST with the same `id`: the same request is a no-op, another is a conflict."""

from __future__ import annotations

from typing import Any, Mapping

from core.errors import Conflict


def check_same_request(existing: Mapping[str, Any], owner_column: str, owner: str,
                       request: Any, what: str, id_: str) -> None:
    """Raise `409 id_conflict` unless `existing` was made by this very request (CONTRACT §5)."""
    if existing[owner_column] != owner or existing["request"] != request:
        raise Conflict("id_conflict", f"{what} {id_!r} exists with another body")
