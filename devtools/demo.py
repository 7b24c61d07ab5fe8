"""`settle-demo`: set up the partial-payment story against a running settle and say what to try.

It talks to the API like the invoicing application would: a customer, a
10,000 invoice, and a request to pay 3,000 of it now.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from typing import Any

import aiohttp

from present.formats import money


class DemoError(Exception):
    pass


async def _call(http: aiohttp.ClientSession, method: str, path: str,
                body: dict[str, Any] | None = None) -> Any:
    async with http.request(method, path, json=body) as response:
        payload = await response.json(content_type=None)
        if response.status >= 400:
            raise DemoError(f"{method} {path}: {response.status} {payload}")
        return payload


async def demo(base_url: str, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url, headers=headers) as http:
        try:
            async with http.get("/readyz") as ready:
                if ready.status != 200:
                    raise DemoError(f"{base_url}/readyz answers {ready.status}: is make run up?")
        except aiohttp.ClientError:
            raise DemoError(f"nothing answers at {base_url}: start it with make run") from None
        suffix = secrets.token_hex(2).upper()
        invoice_id = f"demo-{suffix.lower()}"
        customer = await _call(http, "PUT", "/v1/customers/demo-customer",
                               {"email": "customer@example.com", "name": "Dana Demo"})
        await _call(http, "PUT", f"/v1/invoices/{invoice_id}", {
            "customer_id": "demo-customer", "number": f"DEMO-{suffix}", "currency": "usd",
            "total": 10_000, "notify_emails": ["accounts@example.com"],
            "auto_apply_credit": False, "due_date": "2030-01-31",
            "allow_partial": True, "min_partial_amount": 1_000,
            "lines": [{"description": "Website redesign", "amount": 8_000},
                      {"description": "Hosting, first year", "amount": 2_000}]})
        invoice = await _call(http, "POST", f"/v1/invoices/{invoice_id}/send")
        request = await _call(http, "POST", f"/v1/invoices/{invoice_id}/payment-requests", {
            "amount": 3_000, "to": "customer@example.com",
            "note": "First instalment, as agreed. Thank you!"})

    def usd(cents: int) -> str:
        return money(cents, "usd")

    second = json.dumps({"amount": 2_000, "to": "customer@example.com"})
    return f"""
Invoice DEMO-{suffix} for {usd(10_000)} is sent to Dana Demo, with a request to pay {usd(3_000)} now
(the payment_request mail is in the make run terminal, with both links below).

0. Dana's invoice page, where she can choose what to pay (at least {usd(1_000)}), pay the rest,
   use her credit, and download the PDF:
     {invoice['invoice_url']}
   and her page of all her invoices and credit:
     {customer['portal_url']}

1. Pay the {usd(3_000)} request: open
     {request['url']}
   and choose "Pay by card". The invoice is now partially paid, {usd(7_000)} remaining:
     curl -s {base_url}/v1/invoices/{invoice_id} -H 'Authorization: Bearer {token}'
   Open the link again: it answers 410, already paid.

2. Ask for {usd(2_000)} more:
     curl -s -X POST {base_url}/v1/invoices/{invoice_id}/payment-requests \\
          -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{second}'
   Open its "url" and choose "Pay by bank transfer": the transfer is processing.

3. Meanwhile Dana uses Pay Now for everything outstanding ({usd(7_000)}): open
     {invoice['pay_url']}
   and pay by card. The invoice is paid; the {usd(2_000)} request is superseded and its
   link answers 410.

4. Back on the bank-transfer page, press "The transfer arrives": the invoice was already
   paid, so the {usd(2_000)} is credited to Dana:
     curl -s {base_url}/v1/customers/demo-customer -H 'Authorization: Bearer {token}'

The invoice page follows every step (reload it); once paid it is the receipt.
Every step's email is printed in the make run terminal; the whole story is in
     .venv/bin/settle invoice {invoice_id}
"""


def run(base_url: str, token: str) -> int:
    try:
        print(asyncio.run(demo(base_url.rstrip("/"), token)))
    except DemoError as error:
        print(f"settle: {error}", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    port = os.environ.get("PORT", "8080")
    top = argparse.ArgumentParser(prog="settle-demo", description=__doc__.splitlines()[0])
    top.add_argument("--url", default=f"http://localhost:{port}",
                     help="settle's address (default http://localhost:$PORT)")
    args = top.parse_args()
    token = (os.environ.get("API_TOKENS") or "dev-token").split(",")[0].strip()
    sys.exit(run(args.url, token))


if __name__ == "__main__":
    main()
