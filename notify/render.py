"""Rendering notifications: a plain-text and an HTML part from templates.

HTML templates autoescape, so anything a caller wrote (a note, a name) is
shown as text and can never add markup or links.
"""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from email.utils import formatdate
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ledger.money import format_amount

SUBJECTS = {
    "payment_request": "Payment request: {amount} for invoice {number}",
    "reminder": "Reminder: {amount} for invoice {number}",
    "payment_received": "Payment received: {amount} for invoice {number}",
    "invoice_paid": "Invoice {number} is paid",
    "credit_issued": "{credited} credit added to your account",
    "refund_issued": "Refund of {amount} for invoice {number}",
    "credit_note_issued": "Credit note of {amount} for invoice {number}",
}


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("notify", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["money"] = format_amount
    return env


def message_id(key: str, mail_from: str) -> str:
    """Stable for one notification: every retry carries the same Message-ID."""
    domain = mail_from.rpartition("@")[2] or "settle"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def render(payload: dict[str, Any], key: str, mail_from: str) -> EmailMessage:
    kind = payload["kind"]
    context = dict(payload["context"])
    env = environment()
    money = {name: format_amount(context[name], context["currency"])
             for name in ("amount", "credited") if name in context}
    # Header values come from our own rows, but a number or name is the caller's:
    # no line breaks may reach a header.
    subject = SUBJECTS[kind].format(**{**context, **money}).replace("\r", " ").replace("\n", " ")
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = ", ".join(payload["to"])
    if payload["cc"]:
        message["Cc"] = ", ".join(payload["cc"])
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id(key, mail_from)
    message["X-Notification-Kind"] = kind
    message["X-Invoice-Id"] = payload["invoice_id"]
    message.set_content(env.get_template(f"{kind}.txt").render(**context))
    message.add_alternative(env.get_template(f"{kind}.html").render(**context), subtype="html")
    return message
