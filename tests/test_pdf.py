"""The invoice PDF (CONTRACT §6, §11): the merchant on paper and how to pay an open
invoice, any length of text flowing onto more pages, made once per state of the
invoice, and a bounded number of builds at once."""

from __future__ import annotations

import asyncio
import io
import re
import threading
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pypdf import PdfReader

from present import pdf, pdf_store
from present.pdf_store import Busy, PdfStore
from tests.conftest import MERCHANT_DETAILS as DETAILS
from tests.service import Service

def pages_of(raw: bytes) -> list[str]:
    reader = PdfReader(io.BytesIO(raw))
    return [re.sub(r"\s+", " ", p.extract_text()).replace("\xa0", " ") for p in reader.pages]


async def the_pdf(client: TestClient, invoice: dict[str, Any]) -> bytes:
    path = invoice["invoice_url"].removeprefix("http://settle.test")
    response = await client.get(path + ".pdf")
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "application/pdf"
    return await response.read()


async def test_the_paper_names_the_merchant_and_says_how_to_pay(merchant: Service) -> None:
    svc = merchant
    invoice = await svc.invoice("inv_1", 10_000, due_date="2030-01-31")
    await svc.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "pay_1", "amount": 3_000, "method": "bank_transfer"}, expect=201)
    text = " ".join(pages_of(await the_pdf(svc.client, invoice)))
    for expected in ("Acme", *DETAILS, "Invoice N-inv_1", "Remaining $70.00", "To pay: $70.00",
                     invoice["invoice_url"], "Bank transfer $30.00"):
        assert expected in text, (expected, text)

    # Paid, with more than was owed: no way to pay any more, and where the rest went.
    paid = await svc.invoice("inv_2", 5_000)
    await svc.call("POST", "/v1/invoices/inv_2/payments",
                   {"id": "pay_2", "amount": 7_000, "method": "cash"}, expect=201)
    text = " ".join(pages_of(await the_pdf(svc.client, paid)))
    assert "Receipt for invoice N-inv_2" in text and "Acme Trading Ltd" in text
    assert "Cash" in text and "$20.00 of it went to your credit" in text
    assert "To pay" not in text and paid["invoice_url"] not in text


async def test_any_length_of_text_flows_onto_more_pages(merchant: Service) -> None:
    svc = merchant
    unbroken = "Z" * 1000
    lines = [{"description": f"Item {n} " + "consulting on the books " * 10, "amount": 100}
             for n in range(499)] + [{"description": unbroken, "amount": 100}]
    invoice = await svc.invoice("inv_1", 50_000, lines=lines, number="N-" + "9" * 250)
    reason = "\n".join(f"Reason line {n}" for n in range(1, 46))
    await svc.call("POST", "/v1/invoices/inv_1/credit-notes",
                   {"id": "cn_1", "amount": 1_000, "reason": reason}, expect=201)
    await svc.call("POST", "/v1/invoices/inv_1/credit-notes",
                   {"id": "cn_2", "amount": 500, "reason": "Q" * 2000}, expect=201)

    pages = pages_of(await the_pdf(svc.client, invoice))
    assert len(pages) > 20
    assert "Item 0 consulting" in pages[0] and "Item 0 " not in "".join(pages[1:])
    later = "".join(pages[1:])
    for expected in ("Item 498 consulting", "Reason line 1", "Reason line 45", "Credit notes"):
        assert expected in later, expected
    # Text with no space to break at is broken between characters, none lost.
    # (Its lines come out of the PDF between the amount of their row: count them.)
    text = "".join(pages)
    assert text.count("Z") == 1000 and text.count("Q") == 2000
    assert "9" * 250 in re.sub(r"\s+", "", pages[0])
    assert "$500.00" in later  # the total, after 500 lines


async def test_one_state_is_built_once_and_a_payment_makes_a_new_pdf(merchant: Service) -> None:
    svc = merchant
    invoice = await svc.invoice("inv_1", 10_000)
    before = pdf_store.STORE.builds
    first = await the_pdf(svc.client, invoice)
    again = await asyncio.gather(*(the_pdf(svc.client, invoice) for _ in range(4)))
    assert pdf_store.STORE.builds == before + 1 and all(body == first for body in again)

    await svc.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "pay_1", "amount": 2_500, "method": "check"}, expect=201)
    # Requests at once for a state not built yet share one build.
    changed = await asyncio.gather(*(the_pdf(svc.client, invoice) for _ in range(4)))
    assert pdf_store.STORE.builds == before + 2 and len(set(changed)) == 1
    assert "Cheque $25.00" in " ".join(pages_of(changed[0]))


async def test_builds_past_the_bound_are_refused_with_a_503_page(
        merchant: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = merchant
    store = PdfStore(workers=1, most_waiting=0)
    monkeypatch.setattr(pdf_store, "STORE", store)
    release = threading.Event()
    build = pdf.invoice_pdf

    def slow(*args: Any) -> bytes:
        release.wait(30)
        return build(*args)

    monkeypatch.setattr(pdf, "invoice_pdf", slow)
    first, second = await svc.invoice("inv_1", 1_000), await svc.invoice("inv_2", 2_000)
    waiting = asyncio.create_task(the_pdf(svc.client, first))
    while not store.building:
        await asyncio.sleep(0.01)
    busy = await svc.client.get(second["invoice_url"].removeprefix("http://settle.test") + ".pdf")
    assert busy.status == 503 and busy.headers["Retry-After"] == "5"
    assert "try again" in await busy.text()
    release.set()
    assert "Invoice N-inv_1" in " ".join(pages_of(await waiting))
    # The bound counts builds, not requests: the first one's state is now kept.
    assert "Invoice N-inv_2" in " ".join(pages_of(await the_pdf(svc.client, second)))
    assert store.builds == 2


async def test_the_store_keeps_at_most_its_bytes() -> None:
    store = PdfStore(most_bytes=4 * 1000)
    for n in range(10):
        store._keep(str(n), b"x" * 900)
    assert store.kept_bytes <= 4000 and list(store.kept) == ["6", "7", "8", "9"]
    store._keep("huge", b"x" * 1001)  # over a quarter of the bound: not kept
    assert "huge" not in store.kept
    with pytest.raises(Busy):
        full = PdfStore(workers=1, most_waiting=0)
        full.building["other"] = asyncio.get_running_loop().create_future()
        await full.invoice_pdf({"x": 1}, "Acme", (), None)
