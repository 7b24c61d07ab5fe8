"""Amounts and dates for people, in the customer's locale (CONTRACT §5, §6, §7), by Babel.

An amount is printed with the currency's real exponent (`ledger.money.exponent`:
the one settle charges in), not the one CLDR suggests, so a page, a PDF and a
mail always show the figure that is charged: ¥500, 1.250 KWD, $25.50.
"""

from __future__ import annotations

import copy
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import (
    NumberFormatError,
    NumberPattern,
    get_decimal_symbol,
    get_group_symbol,
    parse_decimal,
    parse_pattern,
)

from ledger.money import AmountRefused, exponent, minor_units

DEFAULT_LOCALE = "en"


def known_locale(tag: str) -> bool:
    """Whether Babel knows a BCP 47 tag (`en`, `de-DE`, `fr-CA`)."""
    return _parse(tag) is not None


# Bounded: tags arrive from outside.
@lru_cache(maxsize=512)
def _parse(tag: str) -> Locale | None:
    if not 2 <= len(tag) <= 35 or not tag.replace("-", "").isascii() \
            or not tag.replace("-", "").isalnum():
        return None
    try:
        return Locale.parse(tag, sep="-")
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def locale_of(tag: str | None) -> Locale:
    """The Locale of a stored tag; English for one Babel no longer knows."""
    return _parse(tag or DEFAULT_LOCALE) or _parse(DEFAULT_LOCALE)  # type: ignore[return-value]


@cache
def _pattern(tag: str, digits: int, code: bool) -> NumberPattern:
    """The locale's currency pattern with exactly `digits` decimals (and the ISO code
    in place of the symbol when `code`)."""
    locale = locale_of(tag)
    pattern = copy.copy(parse_pattern(locale.currency_formats["standard"]))
    pattern.frac_prec = (digits, digits)
    if code:
        pattern.prefix = tuple(p.replace("¤", "¤¤") for p in pattern.prefix)  # type: ignore[assignment]
        pattern.suffix = tuple(s.replace("¤", "¤¤") for s in pattern.suffix)  # type: ignore[assignment]
    return pattern


def money(amount: int, currency: str, locale: str | None = None, *, code: bool = False) -> str:
    """Minor units for a person: `$1,234.50` in en, `1.234,50 $` in de-DE, `¥500`,
    `KWD1.250`; with `code`, the ISO code instead of the symbol (`USD1,234.50`)."""
    digits = exponent(currency)
    value = Decimal(amount).scaleb(-digits)
    pattern = _pattern(locale or DEFAULT_LOCALE, digits, code)
    return str(pattern.apply(value, locale_of(locale), currency=currency.upper(),
                             currency_digits=False))


def number(amount: int, currency: str, locale: str | None = None) -> str:
    """An amount as the customer may type it: digits and the locale's decimal sign
    (`1234.56` in en, `1234,56` in de-DE, `1.250` KWD, `500` JPY), never grouped; the
    example the page gives."""
    digits = exponent(currency)
    whole, fraction = divmod(amount, 10**digits)
    point = get_decimal_symbol(locale_of(locale))
    return f"{whole}{point}{fraction:0{digits}d}" if digits else str(whole)


# What a person may type for a group separator the locale writes as a space (fr's narrow
# no-break space, a plain one) or as a typographic apostrophe (de-CH's ’).
_SPACES = (" ", "\u00a0", "\u202f")
_APOSTROPHES = ("'", "\u2019")


def parse_amount(text: str, currency: str, locale: str | None = None) -> int:
    """Minor units from an amount a customer typed, read in their locale as the page
    writes amounts (§6): `1.234,56` and `1234,56` in de-DE, `1,234.56` and `1234.56` in
    en; the currency's exponent decides the decimals (`1.250` KWD, `500` JPY). Raises
    `ledger.money.AmountRefused`: `not_a_number` for anything but digits and the locale's
    separators, `ambiguous` for separators out of place (`1234.56` in de-DE, `1,25` in
    en), and the codes of `ledger.money.minor_units`."""
    where = locale_of(locale)
    group, point = get_group_symbol(where), get_decimal_symbol(where)
    typed = text.strip()
    for same in (_SPACES if group in _SPACES else _APOSTROPHES if group in _APOSTROPHES
                 else ()):
        typed = typed.replace(same, group)
    # Babel alone would take `-5`, `1e5`, `NaN`, other scripts' digits, a bare `,5`.
    if not typed or not (typed[0].isascii() and typed[0].isdigit()
                         and typed[-1].isascii() and typed[-1].isdigit()) \
            or any(not (c.isascii() and c.isdigit()) and c not in (group, point) for c in typed):
        raise AmountRefused("not_a_number")
    try:
        value = parse_decimal(typed, where, strict=True)
    except NumberFormatError:
        raise AmountRefused("ambiguous") from None
    return minor_units(value, currency)


def day(value: date | datetime | str | None, locale: str | None = None) -> str:
    """A date for a person (`Jan 31, 2030`, `31.01.2030`); a time shows its UTC date."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        value = value.date()
    return str(format_date(value, format="medium", locale=locale_of(locale)))
