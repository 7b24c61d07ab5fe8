"""Checking what enters through the API, in one place: bodies, queries and path ids.

Text from outside is checked where it enters (CONTRACT §5): a body that is
not a JSON object, nests past reason, or holds `\\u0000` or a lone surrogate
anywhere is `422 input_invalid`; ids are 1-128 printable characters without
whitespace or `/` (`id_invalid`); text fields hold no control characters
(`input_invalid`); an email is exactly one address (`email_invalid`). The
request models (`handlers.models`) are pydantic models built from the types
below, and every validation error is mapped here onto the contract's codes.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Annotated, Any, ClassVar, TypeVar, get_args

from aiohttp import web
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from core.errors import Invalid
from present.formats import known_locale

# --- the rules for text -------------------------------------------------------------

MAX_ID_LENGTH = 128
MAX_DEPTH = 32
# Control characters (C0, DEL, C1 including NEL), line and paragraph separators, and
# surrogates, which are never valid on their own.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Deliberately plain: one @, no spaces, angle brackets, commas or quotes, a dot in
# the domain; matched in full, so "a@b.co\n" is not an address.
EMAIL = re.compile(r"[^@\s<>,;\"()\[\]\\]+@[^@\s<>,;\"()\[\]\\]+\.[^@\s<>,;\"()\[\]\\.]+")
CURRENCY = re.compile(r"[a-z]{3}")


def _fail(code: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(code, message)


def check_id(value: str) -> str:
    if not 0 < len(value) <= MAX_ID_LENGTH or not value.isprintable() \
            or any(c.isspace() or c == "/" for c in value):
        raise _fail("id_invalid", "ids are 1 to 128 printable characters without "
                                  "whitespace or /")
    return value


def check_text(value: str) -> str:
    if not value.strip() or CONTROL.search(value):
        raise _fail("input_invalid", "text must be non-empty, without control characters")
    return value


def check_note(value: str) -> str:
    if CONTROL_BUT_LINES.search(value):
        raise _fail("input_invalid", "a note holds no control characters but newline and tab")
    return value


def check_email(value: str) -> str:
    if len(value) > 254 or CONTROL.search(value) or not EMAIL.fullmatch(value):
        raise _fail("email_invalid", f"{value[:80]!r} is not one email address")
    return value


def check_currency(value: str) -> str:
    if not CURRENCY.fullmatch(value):
        raise _fail("currency_invalid", "currency must be a lowercase ISO 4217 code")
    return value


def check_locale(value: str) -> str:
    if not known_locale(value):
        raise _fail("input_invalid", f"{value[:40]!r} is not a locale Babel knows "
                                     "(a BCP 47 tag: en, de-DE, fr-CA)")
    return value


ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_date(value: Any) -> date:
    # Only the extended form: fromisoformat alone also takes 20261231 and 2026-W53-1.
    if isinstance(value, str) and ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _fail("date_invalid", "a date looks like 2026-12-31")


# What the checks above accept, as JSON Schema for the OpenAPI document (the checks
# stay the one authority: a schema's pattern never validates, it only describes).
ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
             "pattern": r"^[^\s/\x00-\x1f\x7f-\x9f]+$",
             "description": "1 to 128 printable characters without whitespace or /"}
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL_BUT_LINES = r"\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029"


def _described(pattern: str, description: str) -> Any:
    return {"pattern": pattern, "description": description}


Id = Annotated[str, AfterValidator(check_id), WithJsonSchema(ID_SCHEMA)]
Text = Annotated[str, Field(max_length=1000, json_schema_extra=_described(
    f"^[^{_CONTROL}]*[^\\s{_CONTROL}][^{_CONTROL}]*$", "not blank, no control characters")),
    AfterValidator(check_text)]
Note = Annotated[str, Field(max_length=2000, json_schema_extra=_described(
    f"^[^{_CONTROL_BUT_LINES}]*$", "no control characters but newline and tab")),
    AfterValidator(check_note)]
# EMAIL's classes, without the control characters check_email refuses as well.
_EMAIL_PATTERN = "^" + EMAIL.pattern.replace(r"[^@\s", f"[^{_CONTROL}@\\s") + "$"
Email = Annotated[str, AfterValidator(check_email), WithJsonSchema(
    {"type": "string", "maxLength": 254, "pattern": _EMAIL_PATTERN,
     "description": "exactly one address"})]
Currency = Annotated[str, AfterValidator(check_currency), WithJsonSchema(
    {"type": "string", "pattern": "^[a-z]{3}$", "description": "lowercase ISO 4217"})]
LocaleTag = Annotated[str, Field(max_length=35), AfterValidator(check_locale),
                     WithJsonSchema({"type": "string", "maxLength": 35,
                                     "description": "a BCP 47 tag Babel knows: en, de-DE, fr-CA"})]
# Minor units: a positive integer, never a float or a string, below what bigint and
# every sum of them can hold.
Amount = Annotated[int, Field(gt=0, lt=2**53, description="minor units, written as an integer "
                                                       "(100, never 100.0)")]
IsoDate = Annotated[date, BeforeValidator(iso_date),
                    WithJsonSchema({"type": "string", "format": "date"})]


class Body(BaseModel):
    """A request body: strict types (1.0, "100" and true are not amounts), unknown
    fields ignored, never changed after parsing."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    # Fields whose errors carry a code other than "<field>_invalid" (in subclasses).
    CODES: ClassVar[dict[str, str]] = {}


class Query(BaseModel):
    """A query string: every value arrives as text, so types are converted (lax)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    CODES: ClassVar[dict[str, str]] = {}


# --- reading ------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)

# pydantic's own error types that say "this is not a valid value of the field".
_SPECIFIC = {"id_invalid", "input_invalid", "email_invalid", "currency_invalid",
             "amount_invalid"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_strings(value: Any, depth: int = 0) -> None:
    """No \\u0000 or lone surrogate anywhere, and no nesting past MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise Invalid("input_invalid", f"the body nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value or re.search("[\ud800-\udfff]", value):
            raise Invalid("input_invalid", "the body holds \\u0000 or a lone surrogate")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, depth + 1)
            _check_strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, depth + 1)


def decode_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body, or Invalid(input_invalid)."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        # RecursionError: tens of thousands of nested brackets.
        raise Invalid("input_invalid", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Invalid("input_invalid", "the body is not a JSON object")
    _check_strings(data)
    return data


# A message names every invalid field, up to this many (a list of a thousand bad
# addresses is still one readable line).
MAX_NAMED = 20


def error_code(model: type[BaseModel], failure: ValidationError) -> tuple[str, str]:
    """(the contract's code of the first thing wrong with a body, a message naming each)."""
    errors = failure.errors(include_url=False)
    first = errors[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    named = list(dict.fromkeys(_describe(error) for error in errors))
    message = "; ".join(named[:MAX_NAMED])
    if len(named) > MAX_NAMED:
        message += f"; and {len(named) - MAX_NAMED} more"
    if first["type"] in _SPECIFIC:
        return first["type"], message
    codes = getattr(model, "CODES", {})
    return codes.get(field, f"{field}_invalid" if field else "input_invalid"), message


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


# The codes the checks raise themselves, whatever the field (see _SPECIFIC).
_CHECK_CODES = {check_id: "id_invalid", check_text: "input_invalid", check_note: "input_invalid",
                check_email: "email_invalid", check_currency: "currency_invalid"}


def _check_codes(annotation: Any) -> set[str]:
    """The codes of the checks anywhere in a type (`Id | None`, `list[Email]`...)."""
    found = {_CHECK_CODES[item.func] for item in getattr(annotation, "__metadata__", ())
             if isinstance(item, AfterValidator) and item.func in _CHECK_CODES}
    for inner in get_args(annotation):
        found |= _check_codes(inner)
    return found


def codes_of(model: type[BaseModel]) -> set[str]:
    """Every code `error_code` can give for this model: what the document lists under
    422 (and what schemathesis then holds the answers to)."""
    codes: set[str] = set()
    custom: dict[str, str] = getattr(model, "CODES", {})
    for name, info in model.model_fields.items():
        codes.add(custom.get(name, f"{name}_invalid"))
        for item in info.metadata:
            codes |= _check_codes(Annotated[Any, item])
        codes |= _check_codes(info.annotation)
    return codes


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as failure:
        code, message = error_code(model, failure)
        raise Invalid(code, message) from None


async def body(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    """The request body as `model`; an empty body is `{}` when `optional`."""
    raw = await request.read()
    if optional and not raw.strip():
        return validate(model, {})
    return validate(model, decode_object(raw))


def query(request: web.Request, model: type[M]) -> M:
    """The query string as `model` (an empty value counts as absent)."""
    data = {key: value for key, value in request.query.items() if value != ""}
    return validate(model, data)


def path_id(request: web.Request, name: str = "id") -> str:
    """A path id as the contract allows ids (`422 id_invalid` otherwise)."""
    try:
        return check_id(request.match_info[name])
    except PydanticCustomError as bad:
        raise Invalid("id_invalid", bad.message()) from None


TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


def path_token(request: web.Request) -> str | None:
    """A link token from the path, or None when it cannot be one (a 404, never a 5xx)."""
    token = request.match_info.get("token", "")
    return token if TOKEN.fullmatch(token) else None
