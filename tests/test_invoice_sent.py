"""Sending an invoice mails it (CONTRACT §5, §7): `invoice_sent`, once, with the page link
and the PDF of the invoice as it is when the mail goes; `{"mail": false}` mails nothing.
And the merchant's details under its name on the pages and in every mail (§2)."""

from __future__ import annotations

import io
import re
from typing import Any

from pypdf import PdfReader

from devtools.devrun import merchant_hint
from notify.render import message_id
from tests.mailserver import MailServer
from tests.conftest import MERCHANT_DETAILS as DETAILS
from tests.service import Service

def pdf_text(raw: bytes) -> str:
    reader = PdfReader(io.BytesIO(raw))
    return re.sub(r"\s+", " ", " ".join(p.extract_text() for p in reader.pages)).replace(
        "\xa0", " ")


async def draft(svc: Service, invoice_id: str = "inv_1") -> Any:
    return await svc.invoice(invoice_id, 10_000, send=False, due_date="2030-01-31",
                             notify_emails=["books@example.com"])


async def test_sending_mails_the_invoice_once_with_its_pdf(merchant: Service,
                                                          mail: MailServer) -> None:
    svc = merchant
    invoice = await draft(svc)
    response = await svc.client.post("/v1/invoices/inv_1/send",
                                     headers={"Authorization": "Bearer test-token"})
    assert response.status == 200 and (await response.json())["status"] == "sent"
    # Paid in part before the worker mails it: the PDF is the invoice as it is then.
    await svc.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "pay_1", "amount": 3_000, "method": "bank_transfer"}, expect=201)
    await svc.settle()

    [sent] = mail.of_kind("invoice_sent")
    message = sent.message
    assert sent.envelope_to == ["pay@example.com"]  # the customer; notify_emails are the merchant's
    assert message["X-Notification-Kind"] == "invoice_sent"
    assert message["X-Invoice-Id"] == "inv_1"
    assert message["Message-ID"] == message_id("mail:invoice_sent:inv_1", "billing@localhost")
    assert message["Subject"] == "Invoice N-inv_1 from Acme"
    text, html = sent.part("plain"), sent.part("html")
    for part in (text, html):
        assert invoice["invoice_url"] in part and "$100.00" in part and "Jan 31, 2030" in part
        assert all(line in part for line in DETAILS)
    [attached] = list(message.iter_attachments())
    assert attached.get_content_type() == "application/pdf"
    assert attached.get_filename() == "invoice-N-inv_1.pdf"
    paper = pdf_text(attached.get_content())
    for expected in ("Invoice N-inv_1", *DETAILS, "Paid $30.00", "To pay: $70.00",
                     invoice["invoice_url"], "Bank transfer $30.00"):
        assert expected in paper, (expected, paper)

    # Sent again: nothing changes, nothing more is owed or mailed.
    await svc.call("POST", "/v1/invoices/inv_1/send", {"mail": True})
    await svc.settle()
    assert len(mail.of_kind("invoice_sent")) == 1
    assert await svc.db.fetchval(
        "select count(*) from outbox where key like 'mail:invoice_sent:%'") == 1


async def test_mail_false_sends_nothing_and_a_later_send_neither(merchant: Service,
                                                                mail: MailServer) -> None:
    svc = merchant
    await draft(svc)
    sent = await svc.call("POST", "/v1/invoices/inv_1/send", {"mail": False})
    assert sent["status"] == "sent"
    await svc.call("POST", "/v1/invoices/inv_1/send")  # already sent: no mail now either
    await svc.settle()
    assert mail.of_kind("invoice_sent") == []
    assert await svc.db.fetchval(
        "select count(*) from outbox where key like 'mail:invoice_sent:%'") == 0
    refused = await svc.call("POST", "/v1/invoices/inv_1/send", {"mail": "yes"}, expect=422)
    assert refused["error"]["code"] == "input_invalid"


async def test_credit_applied_at_sending_is_said(merchant: Service, mail: MailServer) -> None:
    svc = merchant
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 10_000, "currency": "usd", "reason": "Goodwill"},
                   expect=201)
    await draft(svc)
    await svc.call("POST", "/v1/invoices/inv_1/send")
    await svc.settle()
    [sent] = mail.of_kind("invoice_sent")
    assert "$100.00 of your credit was used" in sent.part("plain")
    assert "Nothing remains to be paid" in sent.part("plain")
    assert "Receipt for invoice N-inv_1" in pdf_text(
        next(sent.message.iter_attachments()).get_content())


async def test_the_merchants_details_on_its_pages_and_in_every_mail(
        merchant: Service, mail: MailServer) -> None:
    svc = merchant
    invoice = await svc.invoice("inv_1", 10_000)
    await svc.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "pay_1", "amount": 3_000, "method": "cash"}, expect=201)
    await svc.settle()
    page = await (await svc.client.get(invoice["invoice_url"].removeprefix(
        "http://settle.test"))).text()
    header = page.split('<header class="site">')[1].split("</header>")[0]
    assert "Acme" in header and all(line in header for line in DETAILS)
    [received] = mail.of_kind("payment_received")
    for part in (received.part("plain"), received.part("html")):
        assert "Acme" in part and all(line in part for line in DETAILS)


def test_make_run_says_to_name_the_merchant() -> None:
    hint = merchant_hint({})
    assert "MERCHANT_NAME" in hint and "MERCHANT_DETAILS" in hint and '"settle"' in hint
    assert merchant_hint({"MERCHANT_NAME": "Acme"}) == ""
