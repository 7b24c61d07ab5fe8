"""Rendering notifications: a plain-text and an HTML part from templates.

Mails render through the one environment of `present` (the customer pages'
own), from `present/templates/mail/`. HTML templates autoescape, so anything a
caller wrote (a note, a name) is shown as text and can never add markup or
links. Amounts and dates are formatted in the customer's locale, which the
outbox row carries, and every mail links the invoice page (CONTRACT §7).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from core import mail
from core.settings import Settings
from present import formats, pdf_store
from present.templating import render as render_template
from reads.views import invoice_url

SUBJECTS = {
    "invoice_sent": "Invoice {number} from {merchant}",
    "payment_request": "Payment request: {amount} for invoice {number}",
    "reminder": "Reminder: {amount} for invoice {number}",
    "payment_received": "Payment received: {amount} for invoice {number}",
    "invoice_paid": "Invoice {number} is paid",
    "credit_issued": "{credited} credit added to your account",
    "refund_issued": "Refund of {amount} for invoice {number}",
    "credit_note_issued": "Credit note of {amount} for invoice {number}",
    "payment_reversed": "Payment reversed: {amount} taken back from invoice {number}",
    "payment_failed": "Your payment of {amount} for invoice {number} did not go through",
}


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "application"
    subtype: str = "pdf"


async def invoice_pdf(page: dict[str, Any], settings: Settings) -> Attachment:
    """The PDF of an invoice page (`reads.pages.invoice_page`), as its page serves it."""
    try:
        content = await pdf_store.STORE.invoice_pdf(page, settings.merchant_name,
                                                    settings.merchant_details,
                                                    page["customer"]["locale"])
    except pdf_store.Busy:
        raise mail.Busy("the PDF builders are busy") from None  # not an attempt: again soon
    return Attachment(page["pdf_name"], content)


def message_id(key: str, mail_from: str) -> str:
    """Stable for one notification: every retry carries the same Message-ID."""
    domain = mail_from.rpartition("@")[2] or "settle"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def context_of(payload: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What the templates are given: the row's context, with what a row owed before
    mails carried a locale and an invoice page lacks."""
    context: dict[str, Any] = {"locale": formats.DEFAULT_LOCALE, "invoice_token": None,
                               "due_date": None, **payload["context"]}
    token = context.pop("invoice_token")
    context["invoice_url"] = invoice_url(settings.public_url, token) if token else None
    context["merchant"] = settings.merchant_name
    context["merchant_details"] = settings.merchant_details
    return context


def render(payload: dict[str, Any], key: str, settings: Settings,
           attachment: Attachment | None = None) -> EmailMessage:
    kind = payload["kind"]
    context = context_of(payload, settings)
    fields: dict[str, Any] = dict(context)
    fields.update({name: formats.money(context[name], context["currency"], context["locale"])
                   for name in ("amount", "credited") if name in context})
    # Header values come from our own rows, but a number or name is the caller's:
    # no line breaks may reach a header.
    subject = SUBJECTS[kind].format(**fields).replace("\r", " ").replace("\n", " ")
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = ", ".join(payload["to"])
    if payload["cc"]:
        message["Cc"] = ", ".join(payload["cc"])
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id(key, settings.mail_from)
    message["X-Notification-Kind"] = kind
    message["X-Invoice-Id"] = payload["invoice_id"]
    message.set_content(render_template(f"mail/{kind}.txt", **context))
    message.add_alternative(render_template(f"mail/{kind}.html", **context), subtype="html")
    if attachment is not None:
        message.add_attachment(attachment.content, maintype=attachment.maintype,
                               subtype=attachment.subtype, filename=attachment.filename)
    return message
