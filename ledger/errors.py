"""Domain errors: what the edge maps to 404, 409 and 422, with the contract's codes."""

from __future__ import annotations


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
