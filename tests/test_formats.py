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
       st.sampled_from(["usd", "jpy", "kwd", "eur", "bhd", "krw"]),
       st.sampled_from(["en", "de-DE", "fr-FR", "de-CH", "en-IN", "ja"]))
def test_what_the_page_suggests_parses_back_to_the_same_amount(amount: int, currency: str,
                                                               locale: str) -> None:
    assert formats.parse_amount(formats.number(amount, currency, locale), currency,
                                locale) == amount


@given(st.integers(min_value=1, max_value=money.LARGEST),
       st.sampled_from(["usd", "jpy", "kwd", "eur"]),
       st.sampled_from(["en", "de-DE", "fr-FR", "de-CH", "en-IN"]))
def test_an_amount_typed_as_the_page_writes_it_is_read_back(amount: int, currency: str,
                                                            locale: str) -> None:
    """What the page shows (`1.234,56 €`), typed without its currency, is the same amount."""
    written = formats.money(amount, currency, locale, code=True).replace(currency.upper(), "")
    assert formats.parse_amount(written.strip("\xa0 "), currency, locale) == amount


@pytest.mark.parametrize("typed,currency,locale,amount", [
    ("1.234,56", "eur", "de-DE", 123_456), ("1234,56", "eur", "de-DE", 123_456),
    ("25,5", "eur", "de-DE", 2_550), ("1,234.56", "usd", "en", 123_456),
    ("1234.56", "usd", "en", 123_456), (" 25.50 ", "usd", "en", 2_550),
    ("1.250", "kwd", "en", 1_250), ("1,250", "kwd", "de-DE", 1_250),
    ("500", "jpy", "en", 500), ("1.500", "jpy", "de-DE", 1_500), ("1,500", "jpy", "en", 1_500),
    ("12,50", "eur", "fr-CA", 1_250), ("1 234,56", "eur", "fr-FR", 123_456),
    ("1\u202f234,56", "eur", "fr-FR", 123_456), ("1'234.50", "chf", "de-CH", 123_450),
])
def test_a_typed_amount_is_read_in_the_customers_locale(typed: str, currency: str, locale: str,
                                                        amount: int) -> None:
    assert formats.parse_amount(typed, currency, locale) == amount


@pytest.mark.parametrize("typed,currency,locale,code", [
    ("1234.56", "eur", "de-DE", "ambiguous"), ("12.34", "eur", "de-DE", "ambiguous"),
    ("1234,56", "usd", "en", "ambiguous"), ("1,25", "usd", "en", "ambiguous"),
    ("1,00.00", "usd", "en", "ambiguous"), ("1..2", "usd", "en", "ambiguous"),
    ("", "usd", "en", "not_a_number"), ("abc", "usd", "en", "not_a_number"),
    ("-5", "usd", "en", "not_a_number"), ("+5", "usd", "en", "not_a_number"),
    ("1e3", "usd", "en", "not_a_number"), ("NaN", "usd", "en", "not_a_number"),
    ("$25", "usd", "en", "not_a_number"), ("25 €", "eur", "de-DE", "not_a_number"),
    ("25.", "usd", "en", "not_a_number"), (".5", "usd", "en", "not_a_number"),
    ("٢٥", "usd", "en", "not_a_number"), ("２５", "usd", "en", "not_a_number"),
    ("2 5", "usd", "en", "not_a_number"),
    ("25.505", "usd", "en", "too_many_decimals"), ("500,5", "jpy", "de-DE", "too_many_decimals"),
    ("1.2505", "kwd", "en", "too_many_decimals"),
    ("0", "usd", "en", "not_positive"), ("0,00", "eur", "de-DE", "not_positive"),
    ("99999999999999999", "usd", "en", "too_large"),
])
def test_a_typed_amount_that_is_not_one(typed: str, currency: str, locale: str,
                                        code: str) -> None:
    with pytest.raises(money.AmountRefused) as refused:
        formats.parse_amount(typed, currency, locale)
    assert refused.value.code == code


@pytest.mark.parametrize("amount,currency,locale,written", [
    (123_456, "eur", "de-DE", "1234,56"), (123_456, "usd", "en", "1234.56"),
    (1_250, "kwd", "en", "1.250"), (1_250, "kwd", "de-DE", "1,250"), (500, "jpy", "de-DE", "500"),
])
def test_the_example_is_written_as_the_locale_writes_it(amount: int, currency: str, locale: str,
                                                        written: str) -> None:
    assert formats.number(amount, currency, locale) == written


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
