"""The /v1 API for customers and invoices: auth, upserts, states and error codes (§5)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.service import AUTH, Service


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-token"},
    {"Authorization": "Basic test-token"}, {"Authorization": "Bearer "},
])
async def test_requests_without_a_valid_token_are_401(client: TestClient,
                                                      headers: dict[str, str]) -> None:
    response = await client.get("/v1/customers/cus_1", headers=headers)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


async def test_no_tokens_configured_refuses_everything(aiohttp_client: Any, settings: Any) -> None:
    from tests.conftest import replace
    from worker.app import create_app

    client = await aiohttp_client(create_app(replace(settings, api_tokens=())))
    assert (await client.get("/v1/customers/x", headers=AUTH)).status == 401


async def test_customer_upsert_and_read(svc: Service) -> None:
    created = await svc.client.put("/v1/customers/cus_2", json={"email": "a@example.com"},
                                   headers=AUTH)
    assert created.status == 201
    first = await created.json()
    portal = first.pop("portal_url")
    assert first == {"id": "cus_2", "email": "a@example.com", "name": None, "locale": "en",
                     "credit_balance": {}}
    assert re.fullmatch(r"http://localhost:8080/c/[A-Za-z0-9_-]{32,}", portal)
    updated = await svc.client.put("/v1/customers/cus_2",
                                   json={"email": "b@example.com", "name": "Bea",
                                         "locale": "de-DE"}, headers=AUTH)
    assert updated.status == 200
    again = await svc.call("GET", "/v1/customers/cus_2")
    assert (again["email"], again["locale"]) == ("b@example.com", "de-DE")
    assert again["portal_url"] == portal  # the page's address never changes
    missing = await svc.call("GET", "/v1/customers/nobody", expect=404)
    assert missing["error"]["code"] == "not_found"


async def test_invoice_upsert_is_idempotent_until_sent(svc: Service) -> None:
    body = {"customer_id": "cus_1", "number": "INV-1", "currency": "usd", "total": 10_000,
            "due_date": "2030-01-31", "notify_emails": ["books@example.com"]}
    first = await svc.call("PUT", "/v1/invoices/inv_1", body, expect=201)
    assert (first["status"], first["amount_remaining"], first["kind"]) == ("draft", 10_000, "invoice")
    assert first["due_date"] == "2030-01-31" and first["pay_url"] is None
    again = await svc.call("PUT", "/v1/invoices/inv_1", {**body, "total": 12_000}, expect=200)
    assert again["total"] == 12_000
    sent = await svc.call("POST", "/v1/invoices/inv_1/send")
    assert sent["status"] == "sent"
    assert (await svc.call("POST", "/v1/invoices/inv_1/send"))["status"] == "sent"
    conflict = await svc.call("PUT", "/v1/invoices/inv_1", body, expect=409)
    assert conflict["error"]["code"] == "invoice_not_draft"


async def test_overdue_status(svc: Service) -> None:
    inv = await svc.invoice("inv_1", 1_000, due_date="2020-01-01")
    assert inv["status"] == "overdue"


@pytest.mark.parametrize("change,code", [
    ({"total": 0}, "total_invalid"),
    ({"total": -5}, "total_invalid"),
    ({"total": 10.5}, "total_invalid"),
    ({"total": "100"}, "total_invalid"),
    ({"total": True}, "total_invalid"),
    ({"currency": "USD"}, "currency_invalid"),
    ({"currency": "dollars"}, "currency_invalid"),
    ({"customer_id": None}, "customer_id_invalid"),
    ({"customer_id": "cus_nobody"}, "customer_not_found"),
    ({"number": 12}, "number_invalid"),
    ({"due_date": "31/01/2030"}, "due_date_invalid"),
    ({"kind": "estimate"}, "kind_invalid"),
    ({"notify_emails": "a@example.com"}, "email_invalid"),
    ({"notify_emails": ["not-an-email"]}, "email_invalid"),
    ({"auto_apply_credit": "yes"}, "auto_apply_credit_invalid"),
])
async def test_invalid_invoice_fields_are_422(svc: Service, change: dict[str, Any],
                                              code: str) -> None:
    body = {"customer_id": "cus_1", "number": "INV-1", "currency": "usd", "total": 10_000}
    error = await svc.call("PUT", "/v1/invoices/inv_1", {**body, **change}, expect=422)
    assert error["error"]["code"] == code


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'"x"', b""])
async def test_bodies_that_are_not_objects_are_422(svc: Service, raw: bytes) -> None:
    response = await svc.client.put("/v1/invoices/inv_1", data=raw,
                                    headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 422
    # CONTRACT §5 (updated): a body that is not a JSON object is input_invalid.
    assert (await response.json())["error"]["code"] == "input_invalid"


async def test_invalid_customer_email_is_422(svc: Service) -> None:
    error = await svc.call("PUT", "/v1/customers/cus_9", {"email": "nope"}, expect=422)
    assert error["error"]["code"] == "email_invalid"


async def test_unknown_invoice_is_404_everywhere(svc: Service) -> None:
    for method, path in [("GET", "/v1/invoices/x"), ("POST", "/v1/invoices/x/send"),
                         ("POST", "/v1/invoices/x/void"), ("POST", "/v1/invoices/x/apply-credit")]:
        error = await svc.call(method, path, expect=404)
        assert error["error"]["code"] == "not_found"


async def test_void(svc: Service) -> None:
    await svc.invoice("inv_1", 1_000, send=False)
    voided = await svc.call("POST", "/v1/invoices/inv_1/void")
    assert voided["status"] == "void"
    assert (await svc.call("POST", "/v1/invoices/inv_1/send", expect=409))["error"]["code"] \
        == "invoice_void"
    assert (await svc.call("PUT", "/v1/invoices/inv_1",
                           {"customer_id": "cus_1", "number": "N", "currency": "usd",
                            "total": 5}, expect=409))["error"]["code"] == "invoice_not_draft"


async def test_void_returns_applied_credit(svc: Service) -> None:
    from sandbox.events import session_completed

    await svc.invoice("inv_1", 1_000)
    await svc.deliver(session_completed("inv_1", 3_000, "pi_1"))
    inv = await svc.invoice("inv_2", 5_000)
    assert inv["amount_credited"] == 2_000 and await svc.balance() == {}
    assert (await svc.call("POST", "/v1/invoices/inv_2/void"))["status"] == "void"
    assert await svc.balance() == {"usd": 2_000}


async def test_paid_invoice_cannot_be_voided(svc: Service) -> None:
    from sandbox.events import session_completed

    await svc.invoice("inv_1", 1_000)
    await svc.deliver(session_completed("inv_1", 1_000, "pi_1"))
    error = await svc.call("POST", "/v1/invoices/inv_1/void", expect=409)
    assert error["error"]["code"] == "invoice_has_payments"


async def test_apply_credit_validation(svc: Service) -> None:
    await svc.invoice("inv_1", 1_000, send=False)
    assert (await svc.call("POST", "/v1/invoices/inv_1/apply-credit", expect=422))["error"][
        "code"] == "invoice_not_open"
    await svc.call("POST", "/v1/invoices/inv_1/send")
    for bad in (0, -1, 1.5, "10"):
        error = await svc.call("POST", "/v1/invoices/inv_1/apply-credit", {"amount": bad},
                               expect=422)
        assert error["error"]["code"] == "amount_invalid"
    assert (await svc.call("POST", "/v1/invoices/inv_1/apply-credit", {"amount": 10},
                           expect=422))["error"]["code"] == "no_credit"


async def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = await client.get("/v1/nothing-here", headers=AUTH)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
