"""Bad input is a 4xx with the contract's code, never a 500 (CONTRACT §3, §5).

Each defect the review found has its own test; then Hypothesis throws
arbitrary bodies, headers and path ids at every route the app serves.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.keys import INTAKES
from sandbox.events import signed
from tests.service import AUTH, TOKEN, Service, raw_request

DEEP = b"[" * 50_000 + b"]" * 50_000


async def code_of(response: Any) -> tuple[int, str]:
    payload = await response.json()
    return response.status, payload["error"]["code"]


@pytest.mark.parametrize("email", ["a@b.co\n", "a@b.co\r\nBcc: x@evil.example",
                                   "a@b.co\u2028", "a b@c.co", "a@b.co, c@d.co", "<a@b.co>"])
async def test_an_email_is_exactly_one_address(svc: Service, email: str) -> None:
    assert await code_of(await svc.client.put(
        "/v1/customers/cus_2", json={"email": email}, headers=AUTH)) == (422, "email_invalid")
    await svc.invoice("inv_1", 1_000)
    assert await code_of(await svc.client.post(
        "/v1/invoices/inv_1/payment-requests", json={"amount": 100, "to": email},
        headers=AUTH)) == (422, "email_invalid")


@pytest.mark.parametrize("char", ["\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
                                  "\u2029", "\r", "\n", "\x7f"])
async def test_control_characters_in_names_and_numbers_are_refused(svc: Service,
                                                                   char: str) -> None:
    assert await code_of(await svc.client.put(
        "/v1/customers/cus_2", json={"email": "a@example.com", "name": f"Ada{char}Lovelace"},
        headers=AUTH)) == (422, "input_invalid")
    body = {"customer_id": "cus_1", "number": f"INV{char}1", "currency": "usd", "total": 100}
    assert await code_of(await svc.client.put("/v1/invoices/inv_9", json=body,
                                              headers=AUTH)) == (422, "input_invalid")
    body = {**body, "number": "INV-1", "customer_id": f"cus{char}1"}
    assert await code_of(await svc.client.put("/v1/invoices/inv_9", json=body,
                                              headers=AUTH)) == (422, "id_invalid")


async def test_a_note_may_hold_newlines_and_tabs_but_no_other_control(paying: Service) -> None:
    svc = paying  # payment requests need a processor (§5)
    await svc.invoice("inv_1", 1_000)
    ok = await svc.request("inv_1", 100, note="Line one\n\tLine two")
    assert ok["note"] == "Line one\n\tLine two"
    refused = await svc.request("inv_1", 100, note="bell\x07", replace=True, expect=422)
    assert refused["error"]["code"] == "input_invalid"


@pytest.mark.parametrize("raw_id", ["%0d%0a", "a%0Db", "a%00b", "a%E2%80%A8b", "a%09b",
                                    "a%20b", "%C2%85", "x" * 129])
async def test_bad_path_ids_are_id_invalid(svc: Service, raw_id: str) -> None:
    for method, path in [("GET", "/v1/customers/{}"), ("GET", "/v1/invoices/{}"),
                         ("POST", "/v1/invoices/{}/send"),
                         ("GET", "/v1/payment-requests/{}"),
                         ("POST", "/v1/ops/events/{}/replay")]:
        response = await svc.client.request(method, path.format(raw_id), headers=AUTH)
        assert await code_of(response) == (422, "id_invalid"), (method, path)


@pytest.mark.parametrize("raw", [
    b'{"email": "a@example.com", "name": "nul\\u0000"}',
    b'{"email": "a@example.com", "ignored": ["\\u0000"]}',
    b'{"email": "a@example.com", "name": "\\ud800"}',
    b'{"email": "a@example.com", "name": "\\udfff tail"}',
    DEEP,
    b'{"email": "a@example.com", "x": ' + b"[" * 40 + b"]" * 40 + b"}",
    b'{"email": "a@example.com", "n": NaN}',
    b"\xff\xfe",
], ids=["nul", "nul-in-ignored-field", "lead-surrogate", "trail-surrogate", "deep-50000",
        "deep-40", "nan", "not-utf8"])
async def test_bodies_no_service_can_store_are_input_invalid(svc: Service, raw: bytes) -> None:
    response = await svc.client.put("/v1/customers/cus_2", data=raw,
                                    headers={**AUTH, "Content-Type": "application/json"})
    assert await code_of(response) == (422, "input_invalid")


async def test_a_deep_signed_webhook_is_400(client: TestClient) -> None:
    raw, headers = signed(DEEP)
    response = await client.post("/webhooks/stripe", data=raw, headers=headers)
    assert await code_of(response) == (400, "event_invalid")


def with_hostile(field: str, value: str) -> dict[str, Any]:
    from sandbox.events import session_completed

    event = session_completed("inv_1", 1_000, "pi_hostile")
    if field == "invoice_id":
        event["data"]["object"]["metadata"]["invoice_id"] = value
    elif field == "elsewhere":
        event["data"]["object"]["customer_email"] = value
    else:
        event[field] = event[field] + value
    return event


HOSTILE = [("id", "\x00"), ("id", "\ud800"), ("type", "\x00"), ("type", "\udfff"),
           ("invoice_id", "inv_\x00"), ("invoice_id", "\ud800"), ("elsewhere", "a\x00b"),
           ("elsewhere", "\udc00")]
HOSTILE_IDS = [field + ("-nul" if "\x00" in value else "-surrogate") for field, value in HOSTILE]


@pytest.mark.parametrize("field,value", HOSTILE, ids=HOSTILE_IDS)
def test_the_stripe_parse_refuses_what_postgresql_cannot_store(field: str, value: str) -> None:
    from core.processor import BadEvent
    from processors.stripe.client import StripeProcessor

    processor = StripeProcessor(api_key=None, api_base=None, webhook_secrets=["s"], tolerance=300)
    with pytest.raises(BadEvent):
        processor.parse(json.dumps(with_hostile(field, value)).encode())
    # A pair of surrogates is one character (an emoji): nothing hostile.
    [event] = processor.parse(json.dumps(with_hostile(field, "\U0001f600")).encode())
    assert event.event_id.startswith("evt_")


@pytest.mark.parametrize("field,value", HOSTILE, ids=HOSTILE_IDS)
async def test_a_signed_event_postgresql_cannot_store_is_400_and_its_batch_is_recorded(
        svc: Service, field: str, value: str) -> None:
    from sandbox.events import session_completed

    good = [session_completed("inv_1", 100, f"pi_{n}") for n in range(6)]
    bad = with_hostile(field, value)
    deliveries = [*good[:3], bad, *good[3:]]

    async def deliver(event: dict[str, Any]) -> Any:
        raw, headers = signed(event)
        return await svc.client.post("/webhooks/stripe", data=raw, headers=headers)

    # What reaches the intake: the hostile event must be refused before it is recorded.
    intake = svc.client.app[INTAKES]["stripe"]
    offered: list[str] = []
    record = intake.record

    async def recording(events: Any) -> list[int | None]:
        offered.extend(event.event_id for event in events)
        return await record(events)

    intake.record = recording  # type: ignore[method-assign]
    answers = await asyncio.gather(*(deliver(event) for event in deliveries))
    assert bad["id"] not in offered and len(offered) == len(good)
    statuses = [answer.status for answer in answers]
    assert statuses == [200, 200, 200, 400, 200, 200, 200], statuses
    assert (await answers[3].json())["error"]["code"] == "event_invalid"
    recorded = await svc.db.fetch("select event_id from events")
    assert sorted(r["event_id"] for r in recorded) == sorted(e["id"] for e in good)


@pytest.mark.parametrize("cursor", [
    base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|" + str(2**64).encode()).decode(),
    base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|-1").decode(),
    base64.urlsafe_b64encode(b"not a date|1").decode(),
    "%00", "\u00e9", "====",
])
async def test_cursors_past_int64_or_garbage_are_cursor_invalid(svc: Service,
                                                               cursor: str) -> None:
    response = await svc.client.get("/v1/ops/events", params={"next": cursor}, headers=AUTH)
    assert await code_of(response) == (422, "cursor_invalid")


def cursor_with_key(key: str) -> str:
    """A cursor shaped as the service makes them, whose key is `key` (surrogates kept)."""
    raw = "2026-01-01T00:00:00+00:00|".encode() + key.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize("key", ["\x00", "inv\x00_1", "\x1f", "\x7f", "\x85", "\u2028",
                                 "\ud800", "\udfff"],
                         ids=["nul", "nul-inside", "unit-separator", "del", "nel", "line-separator",
                              "lead-surrogate", "trail-surrogate"])
@pytest.mark.parametrize("path", ["/v1/invoices", "/v1/webhook-endpoints"])
async def test_a_cursor_whose_key_holds_a_control_character_is_cursor_invalid(
        svc: Service, path: str, key: str) -> None:
    response = await svc.client.get(path, params={"next": cursor_with_key(key)}, headers=AUTH)
    assert await code_of(response) == (422, "cursor_invalid")
    # A key as the service makes them still pages.
    response = await svc.client.get(path, params={"next": cursor_with_key("inv_1")},
                                    headers=AUTH)
    assert response.status == 200


@pytest.mark.parametrize("value", [b"Bearer \xff", b"Bearer \xed\xa0\x80", b"Bearer \xc3\xbf",
                                   b"\xff\xfe", b"Bearer " + TOKEN.encode() + b"\xff"],
                         ids=["not-utf8", "encoded-surrogate", "utf8-y-umlaut", "no-scheme",
                              "token-then-byte"])
async def test_an_authorization_header_with_bytes_no_token_holds_is_401(
        svc: Service, value: bytes) -> None:
    answer = await raw_request(svc.client, "GET", "/v1/invoices", [(b"Authorization", value)])
    assert answer.status == 401
    assert json.loads(answer.body)["error"]["code"] == "unauthorized"
    # The same request with the token is let in.
    answer = await raw_request(svc.client, "GET", "/v1/invoices",
                               [(b"Authorization", b"Bearer " + TOKEN.encode())])
    assert answer.status == 200


def test_a_token_with_a_lone_surrogate_matches_no_token() -> None:
    from handlers.middleware import token_accepted

    for offered in ("Bearer \udcff", "Bearer \ud800", f"Bearer {TOKEN}\udcff"):
        assert token_accepted(offered, (TOKEN, "other")) is False
    assert token_accepted(f"Bearer {TOKEN}", ("other", TOKEN)) is True


@pytest.mark.parametrize("received_at", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00",
                                         "9999-12-31T23:59:59.999999-00:01"])
async def test_a_received_at_past_what_a_time_in_utc_can_hold_is_refused(
        svc: Service, received_at: str) -> None:
    await svc.invoice("inv_1", 1_000)
    body = {"id": "pay_1", "amount": 100, "method": "cash", "received_at": received_at}
    response = await svc.client.post("/v1/invoices/inv_1/payments", json=body, headers=AUTH)
    assert await code_of(response) == (422, "received_at_invalid")
    assert (await svc.get_invoice("inv_1"))["payments"] == []
    # The last and the first moments that are still a time in UTC are recorded.
    for n, edge in enumerate(["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00-01:00"]):
        await svc.call("POST", "/v1/invoices/inv_1/payments",
                       {**body, "id": f"pay_edge_{n}", "received_at": edge}, expect=201)


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1e3", str(2**70)])
async def test_limits_outside_one_to_a_hundred_are_refused(svc: Service, limit: str) -> None:
    response = await svc.client.get("/v1/ops/events", params={"limit": limit}, headers=AUTH)
    assert await code_of(response) == (422, "limit_invalid")


# --- every route, anything at all ------------------------------------------------------

def routes(client: TestClient) -> list[tuple[str, str]]:
    found = []
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        template = info.get("formatter") or info.get("path")
        if template and route.method in ("GET", "PUT", "POST", "DELETE"):
            found.append((route.method, template))
    return sorted(set(found))


path_ids = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(["inv_1", "cus_1", "%00", "%0d%0a", "%ED%A0%80", "%FF", ".", "..",
                     "a" * 300, "%2F"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)
field_names = st.sampled_from(["email", "name", "customer_id", "number", "currency", "total",
                               "due_date", "kind", "notify_emails", "amount", "to", "cc",
                               "note", "replace", "invoice_id", "id", "method", "reason",
                               "refund", "url", "events", "lines", "locale"])
bodies = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(field_names, json_values, max_size=6).map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"", b"{}", b"null", DEEP[:20_000] + DEEP[-20_000:],
                     b'{"email": "\\ud800"}', b'{"amount": 1e400}',
                     b'{"amount": 123456789012345678901234567890}']),
)
content_types = st.sampled_from(["application/json", "text/plain", "application/x-www-form-"
                                 "urlencoded", "multipart/form-data; boundary=x", ""])


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_no_route_answers_5xx_to_anything(svc: Service, data: st.DataObject) -> None:
    method, template = data.draw(st.sampled_from(routes(svc.client)))
    # Each {name} of the template in turn (a drawn id may itself hold "{").
    parts = re.split(r"\{[^}]+\}", template)
    path = parts[0]
    for rest in parts[1:]:
        raw = data.draw(path_ids)
        path += (raw if "%" in raw else quote(raw, safe="")) + rest
    headers = dict(AUTH) if data.draw(st.booleans()) else {}
    content_type = data.draw(content_types)
    if content_type:
        headers["Content-Type"] = content_type
    if data.draw(st.booleans()):
        headers["Stripe-Signature"] = data.draw(st.text(
            st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=60))
    query = data.draw(st.dictionaries(st.sampled_from(["status", "limit", "next", "kind",
                                                        "customer_id", "currency"]),
                                      st.text(max_size=20), max_size=3))
    response = await svc.client.request(method, path, data=data.draw(bodies), headers=headers,
                                        params=query, allow_redirects=False)
    assert response.status < 500, (method, path, response.status, await response.text())


# With a processor configured: signed webhooks with hostile bodies, header bytes that are
# not UTF-8, and same-origin posts of hostile bodies to a real invoice page's forms.

hostile_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff", "x\udc00", "\U0001f600", "", " ",
                     "x" * 300, "1e400", "inv_fuzz", "-1", "0.30", "25,50", "\u2028"]))
event_types = st.one_of(hostile_text, st.sampled_from([
    "checkout.session.completed", "payment_intent.succeeded", "charge.refunded",
    "refund.failed", "checkout.session.expired"]))


@st.composite
def hostile_events(draw: st.DrawFn) -> bytes:
    """A body as Stripe's events are shaped, with anything at all where the values go."""
    obj: dict[str, Any] = draw(st.dictionaries(st.sampled_from(
        ["id", "amount_total", "amount_received", "amount_refunded", "currency",
         "payment_intent", "payment_status", "status", "refunds"]), json_values, max_size=5))
    obj["metadata"] = draw(st.one_of(
        st.fixed_dictionaries({"invoice_id": hostile_text}), json_values))
    event = {"id": draw(st.one_of(hostile_text, json_values)), "type": draw(event_types),
             "data": draw(st.one_of(st.just({"object": obj}), json_values))}
    return json.dumps(event).encode()


webhook_bodies = st.one_of(
    hostile_events(), bodies,
    st.sampled_from([b'{"id": "evt_n", "type": "t", "n": NaN}', b'{"id": "evt_i", "type": "t", '
                     b'"n": 1e400}', b'{"id": "evt_b", "type": "t", "n": ' + b"9" * 5_000 + b"}",
                     b'{"id": "evt_d", "type": "t", "d": ' + DEEP[:5_000] + DEEP[-5_000:] + b"}"]))
# Any bytes but the line breaks that would end the header.
header_bytes = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
form_types = st.sampled_from([
    "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=nope",
    "application/x-www-form-urlencoded; charset=utf-16", "multipart/form-data",
    "multipart/form-data; boundary=x", "multipart/form-data; boundary=" + "b" * 80,
    "text/plain", "application/json", ""])


@st.composite
def form_bodies(draw: st.DrawFn) -> bytes:
    fields = draw(st.dictionaries(st.sampled_from(["what", "amount", "x"]),
                                  st.one_of(st.sampled_from(["rest", "amount"]), hostile_text),
                                  max_size=3))
    urlencoded = "&".join(f"{quote(k)}={quote(v, errors='surrogatepass')}"
                          for k, v in fields.items()).encode()
    part_headers = draw(st.sampled_from([
        b'Content-Disposition: form-data; name="what"', b"", b"Not a header",
        b'Content-Disposition: form-data; name="amount"\r\nContent-Transfer-Encoding: rot13',
        b'Content-Disposition: form-data; name="f"; filename="a"',
        b'Content-Type: text/plain; charset=nope\r\nContent-Disposition: form-data; name="a"',
        b'Content-Type: multipart/mixed; boundary=y\r\nContent-Disposition: form-data; name="a"']))
    multipart = b"--x\r\n" + part_headers + b"\r\n\r\n" + draw(st.binary(max_size=20)) \
        + draw(st.sampled_from([b"\r\n--x--\r\n", b"", b"\r\n--x"]))
    return draw(st.one_of(st.just(urlencoded), st.just(multipart), st.binary(max_size=100)))


async def fuzz_invoice(svc: Service) -> str:
    """A real invoice page's path (made once, on the first example), with credit to use."""
    found = await svc.client.get("/v1/invoices/inv_fuzz", headers=AUTH)
    if found.status == 404:
        await svc.invoice("inv_fuzz", 10_000, allow_partial=True, auto_apply_credit=False)
        await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                       {"id": "adj_fuzz", "amount": 100, "currency": "usd", "reason": "Fuzz"},
                       expect=201)
        found = await svc.client.get("/v1/invoices/inv_fuzz", headers=AUTH)
    return urlsplit((await found.json())["invoice_url"]).path


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_no_hostile_webhook_header_or_form_answers_5xx(paying: Service, standin: Any,
                                                             data: st.DataObject) -> None:
    svc = paying
    page = await fuzz_invoice(svc)
    kind = data.draw(st.sampled_from(["webhook", "header", "form"]))
    if kind == "webhook":
        raw, headers = signed(data.draw(webhook_bodies))
        response = await svc.client.post("/webhooks/stripe", data=raw, headers=headers)
        assert response.status < 500, (raw[:200], response.status, await response.text())
        return
    if kind == "form":
        body = data.draw(form_bodies())
        headers = {"Sec-Fetch-Site": "same-origin"}
        content_type = data.draw(form_types)
        if content_type:
            headers["Content-Type"] = content_type
        action = data.draw(st.sampled_from(["pay", "credit"]))
        response = await svc.client.post(f"{page}/{action}", data=body, headers=headers,
                                         allow_redirects=False)
        assert response.status < 500, (action, content_type, body[:200], response.status,
                                       await response.text())
        return
    method, path = data.draw(st.sampled_from([
        ("GET", "/v1/invoices"), ("PUT", "/v1/customers/cus_f"), ("POST", "/webhooks/stripe"),
        ("POST", f"{page}/pay"), ("POST", f"{page}/credit"), ("GET", page)]))
    name = data.draw(st.sampled_from([b"Authorization", b"Stripe-Signature", b"Content-Type"]))
    value = data.draw(header_bytes)
    body = data.draw(st.one_of(form_bodies(), webhook_bodies))
    sent: list[tuple[bytes, bytes]] = [(b"Sec-Fetch-Site", b"same-origin")]
    if name != b"Authorization":
        sent.append((b"Authorization", b"Bearer " + TOKEN.encode()))
    if name == b"Stripe-Signature" and data.draw(st.booleans()):
        # A real signature of this body, with the hostile bytes after it.
        value = signed(body)[1]["Stripe-Signature"].encode() + value
    sent.append((name, value))
    answer = await raw_request(svc.client, method, path, sent, body)
    assert answer.status < 500, (method, path, sent, body[:200], answer.status, answer.text)


# --- amounts and edits the processor or the books could not honour ---------------------

async def test_three_decimal_currencies_are_charged_in_tens(paying: Service,
                                                            standin: Any) -> None:
    body = {"customer_id": "cus_1", "number": "K-1", "currency": "kwd", "total": 1_255}
    refused = await paying.call("PUT", "/v1/invoices/inv_k", body, expect=422)
    assert refused["error"]["code"] == "total_invalid"
    await paying.call("PUT", "/v1/invoices/inv_k", {**body, "total": 1_250}, expect=201)
    await paying.call("POST", "/v1/invoices/inv_k/send")
    assert (await paying.request("inv_k", 105, expect=422))["error"]["code"] == "amount_invalid"
    request = await paying.request("inv_k", 500)
    opened = await paying.open_link(request["url"])
    assert opened.status == 303
    assert standin.session_for_url(opened.headers["Location"])["amount_total"] == 500


async def test_a_refund_through_stripe_in_a_three_decimal_currency_is_in_tens(
        paying: Service, standin: Any) -> None:
    from sandbox.events import session_completed

    body = {"customer_id": "cus_1", "number": "K-1", "currency": "kwd", "total": 10_000}
    await paying.call("PUT", "/v1/invoices/inv_k", body, expect=201)
    await paying.call("POST", "/v1/invoices/inv_k/send")
    await paying.deliver(session_completed("inv_k", 5_000, "pi_k", currency="kwd"))
    refused = await paying.call("POST", "/v1/payments/pi_k/refunds",
                                {"id": "rf_1", "amount": 1_255}, expect=422)
    assert refused["error"]["code"] == "amount_invalid"
    assert await paying.db.fetchval("select count(*) from refunds") == 0
    await paying.call("POST", "/v1/payments/pi_k/refunds", {"id": "rf_1", "amount": 1_250},
                      expect=202)
    # A manual payment is refunded by hand, not through Stripe: no such rule.
    await paying.call("POST", "/v1/invoices/inv_k/payments",
                      {"id": "cash_k", "amount": 3_005, "method": "cash"}, expect=201)
    await paying.call("POST", "/v1/payments/cash_k/refunds", {"id": "rf_2", "amount": 1_255},
                      expect=202)


async def test_a_draft_with_money_keeps_its_customer_and_currency(svc: Service) -> None:
    from sandbox.events import session_completed

    await svc.customer("cus_2", "other@example.com")
    body = {"customer_id": "cus_1", "number": "D-1", "currency": "usd", "total": 5_000}
    await svc.call("PUT", "/v1/invoices/inv_d", body, expect=201)
    # Money arrives for the draft: all of it is excess, credited to cus_1.
    await svc.deliver(session_completed("inv_d", 1_000, "pi_1"))
    assert await svc.balance("cus_1") == {"usd": 1_000}
    for change in ({"customer_id": "cus_2"}, {"currency": "eur"}):
        refused = await svc.call("PUT", "/v1/invoices/inv_d", {**body, **change}, expect=409)
        assert refused["error"]["code"] == "invoice_has_payments"
    renamed = await svc.call("PUT", "/v1/invoices/inv_d", {**body, "number": "D-2"})
    assert renamed["number"] == "D-2" and renamed["customer_id"] == "cus_1"


async def test_concurrent_creation_of_one_invoice_is_one_201(svc: Service) -> None:
    import asyncio

    body = {"customer_id": "cus_1", "number": "C-1", "currency": "usd", "total": 5_000}
    answers = await asyncio.gather(*(svc.client.put("/v1/invoices/inv_c", json=body,
                                                    headers=AUTH) for _ in range(8)))
    assert sorted(a.status for a in answers) == [200] * 7 + [201]


async def test_a_422_names_every_invalid_field_and_keeps_the_first_ones_code(
        svc: Service) -> None:
    await svc.client.put("/v1/customers/cus_3", json={"email": "a@example.com"}, headers=AUTH)
    response = await svc.client.post("/v1/customers/cus_3/credit-adjustments",
                                      json={"currency": "usd", "reason": "goodwill"},
                                      headers=AUTH)
    payload = await response.json()
    assert (response.status, payload["error"]["code"]) == (422, "id_invalid")
    assert payload["error"]["message"] == "id: Field required; amount: Field required"
    response = await svc.client.put(
        "/v1/invoices/inv_8", json={"customer_id": "cus 3", "number": "", "currency": "USD",
                                    "total": 1.5}, headers=AUTH)
    payload = await response.json()
    assert (response.status, payload["error"]["code"]) == (422, "id_invalid")
    named = [part.split(":")[0] for part in payload["error"]["message"].split("; ")]
    assert named == ["customer_id", "number", "currency", "total"]
