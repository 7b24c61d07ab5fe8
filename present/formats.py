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
from babel.numbers import NumberPattern, get_decimal_symbol, parse_pattern

from ledger.money import exponent

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


def number(amount: int, currency: str) -> str:
    """An amount as the customer types it back: digits and a point (`25.50`, `1.250`,
    `500`), never grouped; what the amount field is filled with."""
    digits = exponent(currency)
    whole, fraction = divmod(amount, 10**digits)
    return f"{whole}.{fraction:0{digits}d}" if digits else str(whole)


def decimal_comma(locale: str | None) -> bool:
    """Whether the locale writes a decimal comma (`25,50`): such a customer may type one."""
    return get_decimal_symbol(locale_of(locale)) == ","


def day(value: date | datetime | str | None, locale: str | None = None) -> str:
    """A date for a person (`Jan 31, 2030`, `31.01.2030`); a time shows its UTC date."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        value = value.date()
    return str(format_date(value, format="medium", locale=locale_of(locale)))
