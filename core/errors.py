"""Every error settle raises on purpose, and the one classifier of the rest.

Two families:

- `DomainError`s are answers to a caller: the edge maps them to 404, 409 and
  422 with the contract's codes.
- Work errors steer a job: `PermanentError` (never passes: recorded with its
  reason), `RetryLater` (not yet: retried a few times, then recorded), and
  anything `is_transient` says will pass by itself (retried with backoff).

Adapters to outside parties (the processor, the mail server) turn their own
exceptions into these, so nothing above them knows a library's error types.
"""

from __future__ import annotations

import asyncio

import asyncpg

# --- answers to a caller ----------------------------------------------------------


class DomainError(Exception):
    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(DomainError):
    status = 404

    def __init__(self, what: str, ident: str) -> None:
        super().__init__("not_found", f"no {what} {ident!r}")


class Conflict(DomainError):
    status = 409


class Invalid(DomainError):
    status = 422


# --- what steers a job --------------------------------------------------------------


class PermanentError(Exception):
    """The work can never be done as it is (a currency mismatch, a refused refund...)."""


class RetryLater(Exception):
    """Not yet: retry after `defer` seconds, a bounded number of times."""

    def __init__(self, reason: str, defer: float = 0.0) -> None:
        super().__init__(reason)
        self.defer = defer


class Unavailable(Exception):
    """An outside party (processor, mail server) did not answer or answered "later"."""


# SQLSTATE classes that pass: connection trouble (08), a transaction rolled back
# by a deadlock or serialisation failure (40), resources (53), an object not yet
# available, e.g. a database refusing connections (55), an operator shutting the
# server down (57), system errors (58).
_TRANSIENT_SQLSTATE_CLASSES = {"08", "40", "53", "55", "57", "58"}


def is_transient(exc: BaseException) -> bool:
    """Will trying again later plausibly work, with nothing changed by anyone?"""
    if isinstance(exc, (Unavailable, OSError, asyncio.TimeoutError, asyncpg.InterfaceError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return False


def describe(exc: BaseException) -> str:
    """A short reason for a row (never a traceback, never more than 500 characters).
    A PermanentError's text is settle's own reason, written for the operator (and, for a
    webhook message, the merchant's API: "address not allowed"), so it stands alone."""
    if isinstance(exc, PermanentError) and str(exc):
        return str(exc)[:500]
    text = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
    return text[:500]
