"""The sandbox processor: a local stand-in for the Stripe API calls settle makes.

settle reaches it through the real `stripe` client (`STRIPE_API_BASE`); its
objects are shaped from Stripe's own fixtures. The test suite uses it as its
Stripe stand-in, and `make run` serves it when no STRIPE_API_KEY is set.

It also plays the customer: `pay(session_id)` completes a Checkout Session the
way Stripe does and returns the events Stripe would then send
(`checkout.session.completed`, then `payment_intent.succeeded`); with a
`webhook_url` it signs and posts them too, as Stripe does. Its checkout page
lets a person pay by card (at once) or by bank transfer (processing, then
succeeded or failed by a button).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from present.formats import money
from sandbox.events import event, signed, stripe_object

log = logging.getLogger("settle.sandbox")


def unflatten(params: dict[str, str]) -> dict[str, Any]:
    """Stripe's form encoding (`a[b][0][c]=v`) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in params.items():
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def lists(node: Any) -> Any:
        if isinstance(node, dict):
            if node and all(k.isdigit() for k in node):
                return [lists(node[k]) for k in sorted(node, key=int)]
            return {k: lists(v) for k, v in node.items()}
        return node

    return lists(root)  # type: ignore[no-any-return]


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    idempotency_key: str | None


@dataclass
class StripeStandIn:
    api_key: str = "sk_test_standin"
    base: str = ""  # where it listens, once started
    calls: list[Call] = field(default_factory=list)
    # Answer the next N calls with this status (a 500 or 429 to test retries).
    failures: list[int] = field(default_factory=list)
    # Seconds every API call takes before it is answered (a slow Stripe).
    delay: float = 0.0
    # The status a new refund gets ("succeeded", or "pending" to fail it later).
    refund_status: str = "succeeded"
    # Make the next refund, then answer 500 as if the answer were lost on the way.
    lose_next_refund_answer: bool = False
    # PaymentIntents by id, and every refund made, by id.
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Where to post the events a customer's payment produces (none: tests deliver them).
    webhook_url: str | None = None
    webhook_secret: str = ""
    _idempotent: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/refunds", self.create_refund)
        app.router.add_get("/v1/refunds", self.list_refunds)
        app.router.add_get("/v1/payment_intents/{id}", self.retrieve_intent)
        app.router.add_post("/v1/checkout/sessions", self.create_session)
        app.router.add_get("/v1/checkout/sessions/{id}", self.retrieve_session)
        app.router.add_post("/v1/checkout/sessions/{id}/expire", self.expire_session)
        app.router.add_get("/checkout/{id}", self.checkout_page)
        app.router.add_post("/checkout/{id}/pay", self.checkout_pay)
        app.router.add_post("/checkout/{id}/transfer", self.checkout_transfer)
        return app

    # --- the customer ---------------------------------------------------------------

    def forget_idempotency_keys(self) -> None:
        """Stripe forgets an idempotency key after 24 hours."""
        self._idempotent.clear()

    def _intent(self, session: dict[str, Any], status: str) -> dict[str, Any]:
        # The stand-in's PaymentIntent names the one type the customer chose (a card, or
        # customer_balance for a bank transfer): how settle tells how it was paid.
        intent = stripe_object(
            "payment_intent", id=session["payment_intent"], amount=session["amount_total"],
            amount_received=session["amount_total"] if status == "succeeded" else 0,
            currency=session["currency"], status=status,
            metadata=dict(session["_intent_metadata"]),
            payment_method_types=[session.get("_method", "card")])
        self.intents[intent["id"]] = intent
        return intent

    def refunded_charge(self, payment_intent: str) -> dict[str, Any]:
        """charge.refunded as Stripe sends it now: the cumulative amount_refunded (refunds
        not failed or canceled) and the refunds it lists."""
        intent = self.intents[payment_intent]
        listed = [r for r in self.refunds.values() if r["payment_intent"] == payment_intent]
        refunded = sum(r["amount"] for r in listed if r["status"] not in ("failed", "canceled"))
        charge = stripe_object(
            "charge", id=f"ch_{payment_intent}", amount=intent["amount"],
            amount_captured=intent["amount_received"], amount_refunded=refunded,
            refunded=refunded >= intent["amount_received"], currency=intent["currency"],
            payment_intent=payment_intent, metadata=dict(intent["metadata"]),
            refunds={"object": "list", "data": [dict(r) for r in listed], "has_more": False})
        return event("charge.refunded", charge)

    def fail_refund(self, refund_id: str, status: str = "failed") -> dict[str, Any]:
        """A refund fails (or is canceled) after it was made: the event Stripe sends."""
        refund = self.refunds[refund_id]
        refund["status"] = status
        return event("refund.failed" if status == "failed" else "refund.updated", dict(refund))

    def success_url(self, session_id: str) -> str:
        """Where Stripe sends the customer after paying: the session's success_url with
        `{CHECKOUT_SESSION_ID}` filled in, as Stripe does."""
        url: str = self.sessions[session_id]["success_url"]
        return url.replace("{CHECKOUT_SESSION_ID}", session_id)

    def session_for_url(self, url: str) -> dict[str, Any]:
        return self.sessions[url.rstrip("/").rsplit("/", 1)[1]]

    def pay(self, session_id: str, *, payment_status: str = "paid") -> list[dict[str, Any]]:
        """Complete an open session; the events Stripe would send, in its order."""
        session = self.sessions[session_id]
        if session["status"] != "open":
            raise AssertionError(f"session {session_id} is {session['status']}, not open")
        session.update(status="complete", payment_status=payment_status,
                       _method="card" if payment_status == "paid" else "customer_balance")
        public = {k: v for k, v in session.items() if not k.startswith("_")}
        events = [event("checkout.session.completed", public)]
        if payment_status == "paid":
            events.append(event("payment_intent.succeeded", self._intent(session, "succeeded")))
        else:
            self._intent(session, "processing")
        return events

    def transfer(self, session_id: str, *, succeeded: bool) -> list[dict[str, Any]]:
        """A bank transfer that was processing arrives, or fails."""
        session = self.sessions[session_id]
        if session["status"] != "complete" or session["payment_status"] != "unpaid":
            raise AssertionError(f"session {session_id} has no transfer processing")
        public = {k: v for k, v in session.items() if not k.startswith("_")}
        if not succeeded:
            self._intent(session, "requires_payment_method")
            return [event("checkout.session.async_payment_failed", public)]
        session["payment_status"] = public["payment_status"] = "paid"
        intent = self._intent(session, "succeeded")
        return [event("checkout.session.async_payment_succeeded", public),
                event("payment_intent.succeeded", intent)]

    async def post_events(self, events: list[dict[str, Any]]) -> None:
        """Sign and post events to the webhook in order, retrying like Stripe (briefly)."""
        if not self.webhook_url:
            return
        async with aiohttp.ClientSession() as http:
            for item in events:
                for attempt in range(5):
                    raw, headers = signed(item, self.webhook_secret)
                    try:
                        async with http.post(self.webhook_url, data=raw, headers=headers) as r:
                            if r.status == 200:
                                break
                            log.warning("webhook refused", extra={"status": r.status})
                    except aiohttp.ClientError as exc:
                        log.warning("webhook unreachable", extra={"error": str(exc)})
                    await asyncio.sleep(0.5 * (attempt + 1))

    # --- the checkout page a person sees ---------------------------------------------

    def _page(self, session: dict[str, Any], body: str) -> web.Response:
        amount = money(session["amount_total"], session["currency"])
        # What the line item says (settle names it "Invoice <number>"), as Stripe's page
        # shows it: the customer knows their invoice by its number, not settle's id.
        product = session.get("_line_item", {}).get("price_data", {}).get("product_data", {})
        invoice = html.escape(product.get("name")
                              or f"Invoice {session['metadata'].get('invoice_id', '')}")
        back = html.escape(session.get("cancel_url") or "", quote=True)
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>Sandbox checkout</title></head>"
            "<body style=\"font-family: system-ui, sans-serif; max-width: 30rem; margin: 3rem auto;"
            " padding: 0 1rem\"><main>"
            "<p style=\"color: #8a4b00\">Sandbox: no real money moves.</p>"
            f"<h1>Pay {html.escape(amount)}</h1><p>{invoice}</p>{body}"
            + (f"<p><a href=\"{back}\">Cancel and go back</a></p>" if back else "")
            + "</main></body></html>"))

    async def checkout_page(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            raise web.HTTPNotFound(text="No such checkout session")
        sid = html.escape(session["id"])
        if session["status"] == "open":
            return self._page(session, (
                f"<form method=\"post\" action=\"/checkout/{sid}/pay\">"
                "<button id=\"pay-card\" name=\"method\" value=\"card\">Pay by card</button> "
                "<button id=\"pay-bank\" name=\"method\" value=\"bank\">Pay by bank transfer"
                "</button></form>"))
        if session["status"] == "complete" and session["payment_status"] == "unpaid":
            return self._page(session, (
                "<p>Your bank transfer is processing.</p>"
                f"<form method=\"post\" action=\"/checkout/{sid}/transfer\">"
                "<button id=\"transfer-succeeded\" name=\"outcome\" value=\"succeeded\">"
                "The transfer arrives</button> "
                "<button id=\"transfer-failed\" name=\"outcome\" value=\"failed\">"
                "The transfer fails</button></form>"))
        return self._page(session, f"<p>This checkout is {html.escape(session['status'])}"
                                   f" ({html.escape(session['payment_status'])}).</p>")

    async def checkout_pay(self, request: web.Request) -> web.Response:
        session_id = request.match_info["id"]
        if self.sessions.get(session_id, {}).get("status") != "open":
            raise web.HTTPSeeOther(f"/checkout/{session_id}")
        method = (await request.post()).get("method")
        events = self.pay(session_id, payment_status="paid" if method == "card" else "unpaid")
        await self.post_events(events)
        if method == "card":
            raise web.HTTPSeeOther(self.success_url(session_id))
        raise web.HTTPSeeOther(f"/checkout/{session_id}")

    async def checkout_transfer(self, request: web.Request) -> web.Response:
        session_id = request.match_info["id"]
        outcome = (await request.post()).get("outcome")
        try:
            events = self.transfer(session_id, succeeded=outcome == "succeeded")
        except (AssertionError, KeyError):
            raise web.HTTPSeeOther(f"/checkout/{session_id}") from None
        await self.post_events(events)
        if outcome == "succeeded":
            raise web.HTTPSeeOther(self.success_url(session_id))
        self.sessions[session_id]["payment_status"] = "failed"
        raise web.HTTPSeeOther(f"/checkout/{session_id}")

    # --- the API ------------------------------------------------------------------

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": {"type": "invalid_request_error",
                                            "message": message}}, status=status)

    def _public(self, session: dict[str, Any]) -> web.Response:
        return web.json_response({k: v for k, v in session.items() if not k.startswith("_")})

    async def create_session(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if isinstance(call, web.Response):
            return call
        if call.idempotency_key in self._idempotent:
            return self._public(self._idempotent[call.idempotency_key])
        params = unflatten(call.params)
        [item] = params["line_items"]
        price = item["price_data"]
        session_id = f"cs_test_{uuid.uuid4().hex[:24]}"
        session = stripe_object(
            "checkout.session", id=session_id, mode=params["mode"], status="open",
            payment_status="unpaid", amount_total=int(price["unit_amount"]) * int(item["quantity"]),
            amount_subtotal=int(price["unit_amount"]) * int(item["quantity"]),
            currency=price["currency"], metadata=params.get("metadata", {}),
            # What the stand-in's page offers: a card, or a bank transfer.
            payment_method_types=["card", "customer_balance"],
            payment_intent=f"pi_{uuid.uuid4().hex[:24]}", customer_email=params.get("customer_email"),
            success_url=params.get("success_url"), cancel_url=params.get("cancel_url"),
            url=f"{self.base}/checkout/{session_id}", expires_at=int(time.time()) + 86400,
        )
        session["_intent_metadata"] = params.get("payment_intent_data", {}).get("metadata", {})
        session["_line_item"] = item
        self.sessions[session_id] = session
        if call.idempotency_key:
            self._idempotent[call.idempotency_key] = session
        return self._public(session)

    async def _session(self, request: web.Request) -> dict[str, Any] | web.Response:
        call = await self._record(request)
        if isinstance(call, web.Response):
            return call
        return self.sessions.get(request.match_info["id"]) or self._error(
            404, "No such checkout.session")

    async def retrieve_session(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        if isinstance(session, web.Response):
            return session
        public = {k: v for k, v in session.items() if not k.startswith("_")}
        # `expand[]=payment_intent(.latest_charge)`, as Stripe expands it: the PaymentIntent
        # once the customer paid (its charge saying how), else its id.
        expand = {v for k, v in request.query.items() if k.startswith("expand[")}
        intent = self.intents.get(session["payment_intent"])
        if intent is not None and expand & {"payment_intent", "payment_intent.latest_charge"}:
            public["payment_intent"] = dict(intent)
            if "payment_intent.latest_charge" in expand:
                public["payment_intent"]["latest_charge"] = stripe_object(
                    "charge", id=f"ch_{intent['id']}", amount=intent["amount"],
                    currency=intent["currency"], payment_intent=intent["id"],
                    payment_method_details={"type": intent["payment_method_types"][0]})
        return web.json_response(public)

    async def expire_session(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        if isinstance(session, web.Response):
            return session
        if session["status"] != "open":
            return self._error(400, "Only Checkout Sessions with a status of open can be expired")
        session["status"] = "expired"
        return self._public(session)

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    async def _record(self, request: web.Request) -> Call | web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"type": "invalid_request_error",
                                                "message": "Invalid API Key"}}, status=401)
        params = dict(await request.post()) if request.method == "POST" else dict(request.query)
        call = Call(request.method, request.path, {k: str(v) for k, v in params.items()},
                    request.headers.get("Idempotency-Key"))
        self.calls.append(call)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            status = self.failures.pop(0)
            return web.json_response({"error": {"type": "api_error", "message": "stand-in"}},
                                     status=status)
        return call

    async def create_refund(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if isinstance(call, web.Response):
            return call
        if call.idempotency_key and call.idempotency_key in self._idempotent:
            return web.json_response(self._idempotent[call.idempotency_key])
        refund = stripe_object(
            "refund", id=f"re_{uuid.uuid4().hex[:24]}", amount=int(call.params["amount"]),
            payment_intent=call.params.get("payment_intent"), status=self.refund_status,
            created=int(time.time()),
            currency=self.intents.get(call.params.get("payment_intent") or "", {}).get(
                "currency", "usd"),
            metadata={k[9:-1]: v for k, v in call.params.items() if k.startswith("metadata[")},
        )
        self.refunds[refund["id"]] = refund
        if call.idempotency_key:
            self._idempotent[call.idempotency_key] = refund
        if self.lose_next_refund_answer:
            self.lose_next_refund_answer = False
            return web.json_response({"error": {"type": "api_error", "message": "lost"}},
                                     status=500)
        return web.json_response(refund)

    async def list_refunds(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if isinstance(call, web.Response):
            return call
        wanted = call.params.get("payment_intent")
        data = [r for r in self.refunds.values() if r["payment_intent"] == wanted]
        return web.json_response({"object": "list", "data": data, "has_more": False,
                                  "url": "/v1/refunds"})

    async def retrieve_intent(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if isinstance(call, web.Response):
            return call
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return self._error(404, "No such payment_intent")
        return web.json_response(intent)
