"""Reading request bodies strictly: a wrong type is a 422 with a code, never a 500."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from aiohttp import web

from core.errors import Invalid

# Deliberately plain: one @, no spaces or angle brackets, a dot in the domain.
EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
CURRENCY = re.compile(r"^[a-z]{3}$")


async def json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip() and optional:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise Invalid("body_invalid", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Invalid("body_invalid", "the body is not a JSON object")
    return body


def string(body: dict[str, Any], field: str, *, max_length: int = 1000) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise Invalid(f"{field}_invalid", f"{field} must be a non-empty string")
    return value


def optional_string(body: dict[str, Any], field: str, *, max_length: int = 1000) -> str | None:
    return None if body.get(field) is None else string(body, field, max_length=max_length)


def email(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not EMAIL.match(value) or len(value) > 320:
        raise Invalid("email_invalid", f"{field} is not an email address")
    return value


def emails(body: dict[str, Any], field: str) -> tuple[str, ...]:
    value = body.get(field)
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 50:
        raise Invalid("email_invalid", f"{field} must be a list of email addresses")
    for item in value:
        if not isinstance(item, str) or not EMAIL.match(item) or len(item) > 320:
            raise Invalid("email_invalid", f"{item!r} in {field} is not an email address")
    return tuple(value)


def one_or_more_emails(body: dict[str, Any], field: str) -> str | list[str]:
    """An address, or a non-empty list of them, kept in the shape the caller gave."""
    if not isinstance(body.get(field), list):
        return email(body, field)
    found = list(emails(body, field))
    if not found:
        raise Invalid("email_invalid", f"{field} names no email address")
    return found


def amount(body: dict[str, Any], field: str, *, code: str = "amount_invalid") -> int:
    value = body.get(field)
    # bool is an int in Python; 1.0 and "100" are not minor units.
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value >= 2**62:
        raise Invalid(code, f"{field} must be a positive integer in minor units")
    return value


def optional_amount(body: dict[str, Any], field: str) -> int | None:
    return None if body.get(field) is None else amount(body, field)


def currency(body: dict[str, Any], field: str = "currency") -> str:
    value = body.get(field)
    if not isinstance(value, str) or not CURRENCY.match(value):
        raise Invalid("currency_invalid", "currency must be a lowercase ISO 4217 code")
    return value


def a_date(body: dict[str, Any], field: str) -> date | None:
    value = body.get(field)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{field}_invalid", f"{field} must be a date like 2026-12-31") from None


def boolean(body: dict[str, Any], field: str, default: bool) -> bool:
    value = body.get(field, default)
    if not isinstance(value, bool):
        raise Invalid(f"{field}_invalid", f"{field} must be true or false")
    return value


def choice(body: dict[str, Any], field: str, choices: tuple[str, ...]) -> str:
    value = body.get(field, choices[0])
    if value not in choices:
        raise Invalid(f"{field}_invalid", f"{field} must be one of {', '.join(choices)}")
    return str(value)


def path_id(request: web.Request, name: str = "id") -> str:
    value = request.match_info[name]
    if not 0 < len(value) <= 255:
        raise Invalid("id_invalid", "ids are 1 to 255 characters")
    return value
