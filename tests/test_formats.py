"""Amounts and dates for people, by Babel in the customer's locale, with each currency's
real exponent (present.formats); the one Jinja2 environment that escapes."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import money
from present import formats
from present.templating import environment

NBSP = "\xa0"


@pytest.mark.parametrize("amount,currency,locale,text", [
    (123_450, "usd", "en", "$1,234.50"), (1_200, "eur", "en", "€12.00"), (5, "usd", "en", "$0.05"),
    (500, "jpy", "en", "¥500"), (100_000, "chf", "en", "CHF1,000.00"), (-250, "gbp", "en", "-£2.50"),
    (1_250, "kwd", "en", "KWD1.250"), (5, "bhd", "en", "BHD0.005"),
    (123_450, "usd", "de-DE", f"1.234,50{NBSP}$"), (123_450, "eur", "fr-CA", f"1{NBSP}234,50{NBSP}€"),
    (500, "jpy", "de-DE", f"500{NBSP}¥"), (1_250, "kwd", "de-DE", f"1,250{NBSP}KWD"),
    (123_450, "usd", "ja", "$1,234.50"), (123_450, "usd", "xx-unknown", "$1,234.50"),
])
def test_amounts_for_people(amount: int, currency: str, locale: str, text: str) -> None:
    assert formats.money(amount, currency, locale) == text


def test_the_iso_code_in_place_of_the_symbol() -> None:
    assert formats.money(123_450, "usd", "en", code=True) == "USD1,234.50"
    assert formats.money(1_250, "kwd", "de-DE", code=True) == f"1,250{NBSP}KWD"


@pytest.mark.parametrize("locale,text", [("en", "Jan 31, 2030"), ("de-DE", "31.01.2030"),
                                         ("fr-CA", "31 janv. 2030"), ("ja", "2030/01/31")])
def test_dates_for_people(locale: str, text: str) -> None:
    assert formats.day(date(2030, 1, 31), locale) == text
    assert formats.day("2030-01-31", locale) == text
    assert formats.day("2030-01-31T23:59:00+00:00", locale) == text


@pytest.mark.parametrize("tag,known", [("en", True), ("de-DE", True), ("fr-CA", True),
                                       ("zh-Hant-TW", True), ("xx-YY", False), ("en_US", False),
                                       ("", False), ("e" * 40, False), ("de\n", False)])
def test_known_locales(tag: str, known: bool) -> None:
    assert formats.known_locale(tag) is known


@given(st.integers(min_value=1, max_value=money.LARGEST),
       st.sampled_from(["usd", "jpy", "kwd", "eur", "bhd", "krw"]))
def test_what_the_page_suggests_parses_back_to_the_same_amount(amount: int, currency: str) -> None:
    assert money.parse_amount(formats.number(amount, currency), currency) == amount


def test_one_environment_escapes_pages_and_html_mails_but_not_plain_text() -> None:
    env = environment()
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    html = env.get_template("mail/payment_request.html").render(
        amount=3_000, currency="usd", number="<i>N</i>", url="http://x/pay/t", note=None,
        customer_name=None, due_date=None, invoice_url=None, merchant="M", merchant_details=(),
        locale="en")
    assert "&lt;i&gt;N&lt;/i&gt;" in html and "<i>N</i>" not in html
    text = env.get_template("mail/payment_request.txt").render(
        amount=3_000, currency="usd", number="<i>N</i>", url="http://x/pay/t", note=None,
        customer_name=None, due_date=None, invoice_url=None, merchant="M", merchant_details=(),
        locale="en")
    assert "<i>N</i>" in text and "$30.00" in text
