"""How long to wait before trying again: one backoff for every kind of work."""

from __future__ import annotations


def backoff(attempt: int, cap: float = 300.0) -> float:
    """1, 2, 4, 8... seconds for attempts 1, 2, 3, 4..., never more than `cap`."""
    return float(min(2 ** max(attempt - 1, 0), cap))
