"""How long to wait before trying again: one backoff for every kind of work."""

from __future__ import annotations


def backoff(attempt: int, *, base: float, cap: float = 300.0) -> float:
    """base, 2 x base, 4 x base... seconds for attempts 1, 2, 3..., never more than `cap`.

    `base` is the deployment's `Settings.retry_base_seconds` (1 s unless set): callers pass
    it, so a test shortens or lengthens every delay through its settings."""
    return float(min(base * 2 ** max(attempt - 1, 0), cap))
