"""The one Jinja2 environment of settle: customer pages and mails render through it.

HTML templates autoescape, so anything a caller or customer wrote (a note, a
name, a line's description) is shown as text and can never add markup or
links; plain-text mail parts (`.txt`) are not HTML and are not escaped. No
page or mail is built from strings in Python.

The `money`, `day` and `number` filters format in the template's `locale`
(the customer's), so a template says `{{ amount | money(currency) }}` and
never which locale it is in.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from present import formats, labels


@pass_context
def _money(context: Context, amount: int, currency: str) -> str:
    return formats.money(amount, currency, context.get("locale"))


@pass_context
def _day(context: Context, value: date | datetime | str | None) -> str:
    return formats.day(value, context.get("locale"))


@pass_context
def _number(context: Context, amount: int, currency: str) -> str:
    return formats.number(amount, currency, context.get("locale"))


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("present", "templates"),
        # Everything but a plain-text mail part is escaped, an unknown kind included.
        autoescape=select_autoescape(enabled_extensions=("html",), disabled_extensions=("txt",),
                                     default_for_string=True, default=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["money"] = _money
    env.filters["day"] = _day
    env.filters["number"] = _number
    env.globals["how_paid"] = labels.how_paid
    env.globals["status_label"] = labels.status_label
    env.globals["way_label"] = labels.way_label
    env.globals["asset"] = asset_url
    return env


STATIC = ("site.css", "confirm.js")


@cache
def static_file(name: str) -> bytes | None:
    """A file of `present/static` by name, or None: only the files listed are served."""
    if name not in STATIC:
        return None
    return resources.files("present").joinpath("static", name).read_bytes()


@cache
def asset_url(name: str) -> str:
    """A static file's address, with a digest of its content: cached for long by a
    browser, and fetched anew whenever it changes."""
    content = static_file(name)
    if content is None:
        raise LookupError(name)
    return f"/static/{name}?v={hashlib.sha256(content).hexdigest()[:12]}"


def render(name: str, **context: Any) -> str:
    """A template of `present/templates` (`pages/invoice.html`, `mail/reminder.txt`)."""
    return environment().get_template(name).render(**context)
