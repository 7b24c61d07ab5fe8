"""A local stand-in for the GoCardless API calls settle makes, and its customer's pages.

settle reaches it through the real `gocardless-pro` client (`GOCARDLESS_API_BASE`); its
resources are shaped from GoCardless's own fixtures (`fixtures/gocardless_objects.json`)
and kept in memory. It answers `POST /billing_requests` (an `Idempotency-Key` used before
is GoCardless's 409 `idempotent_creation_conflict`), `GET /billing_requests/{id}`, its
`actions/cancel`, `POST /billing_request_flows`, `GET /payments/{id}`, `POST /refunds`
(with `total_amount_confirmation` checked), `GET /refunds/{id}`, `GET /refunds?payment=`
and `GET /events?payment=&action=`.

It plays the customer and the banks too:

- the flow's `authorisation_url` (`/flow/{id}`) is a page where the customer "sets up the
  Direct Debit": submitting it fulfils the billing request, makes a mandate and a
  payment (`pending_submission`) and sends the customer to `redirect_uri`;
- `/_sandbox` lists payments and refunds with a button for each way they move on
  (submitted, confirmed, failed, late failure, charged back, chargeback cancelled, paid
  out; a refund paid or failed);
- the same moves as JSON for tests: `POST /_sandbox/payments/{id}/{action}`,
  `POST /_sandbox/refunds/{id}/{action}`, `POST /_sandbox/billing_requests/{id}/fulfil`,
  each answering the batch of events it made; `?hold=true` keeps the batch from being
  posted, so a test can deliver it itself (shuffled, duplicated).

Every event it makes is kept (`GET /events` lists them, as GoCardless does) and, with a
`webhook_url`, posted as GoCardless posts: a signed batch, `{"events": [...]}`, thin
events naming their resource in `links` with its metadata in `resource_metadata`.
"""

from __future__ import annotations

import asyncio
import copy
import html
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from present.formats import money
from processors.gocardless.signature import sign

log = logging.getLogger("settle.sandbox")

# GoCardless's own bodies (see its `_source` and `_licence`), kept in the repository.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gocardless_objects.json"
# The webhook secret the test suite configures; the sandbox is given its own.
SECRET = "gc_webhook_test_secret"
ACCESS_TOKEN = "gc_sandbox_token"

# How a payment moves on, by the stand-in's action: (its status after, the event's action).
PAYMENT_MOVES: dict[str, tuple[str, str]] = {
    "submitted": ("submitted", "submitted"),
    "confirmed": ("confirmed", "confirmed"),
    "failed": ("failed", "failed"),
    "cancelled": ("cancelled", "cancelled"),
    "customer_approval_denied": ("customer_approval_denied", "customer_approval_denied"),
    # A payment that failed after it was confirmed: GoCardless says `failed` first, then
    # `late_failure_settled` once it has taken the money back from a payout.
    "late_failure": ("failed", "failed"),
    "late_failure_settled": ("failed", "late_failure_settled"),
    "charged_back": ("charged_back", "charged_back"),
    "chargeback_cancelled": ("paid_out", "chargeback_cancelled"),
    "paid_out": ("paid_out", "paid_out"),
}
# The buttons the payments page offers, by the payment's status.
BUTTONS = {
    "pending_submission": ("submitted", "failed", "cancelled"),
    "submitted": ("confirmed", "failed"),
    "confirmed": ("paid_out", "late_failure", "charged_back"),
    "paid_out": ("late_failure", "charged_back"),
    "failed": ("late_failure_settled",),
    "charged_back": ("chargeback_cancelled",),
}
REFUND_MOVES = ("pending_submission", "submitted", "paid", "failed", "cancelled", "bounced",
                "funds_returned")
# A refund takes back nothing once it is one of these.
REFUND_UNDONE = frozenset({"failed", "cancelled", "bounced", "funds_returned"})


@cache
def _fixtures() -> dict[str, Any]:
    return json.loads(FIXTURES.read_text())  # type: ignore[no-any-return]


def gocardless_object(kind: str, **overrides: Any) -> dict[str, Any]:
    """A resource shaped as GoCardless's fixture of that kind, with the fields a scenario
    needs replaced."""
    obj: dict[str, Any] = copy.deepcopy(_fixtures()[kind])
    obj.update(overrides)
    return obj


def now_iso(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + offset).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):010d}"


def gocardless_event(resource_type: str, action: str, *, event_id: str | None = None,
                     metadata: dict[str, str] | None = None, cause: str | None = None,
                     **links: str) -> dict[str, Any]:
    """A thin event as GoCardless posts it: the resource by id in `links`, what happened
    in `action`, the resource's metadata in `resource_metadata`."""
    return gocardless_object(
        "events", id=event_id or new_id("EV"), created_at=now_iso(),
        resource_type=resource_type, action=action, links=links,
        details={"origin": "gocardless", "cause": cause or f"{resource_type}_{action}",
                 "description": f"{resource_type} {action} (the stand-in)"},
        metadata={}, resource_metadata=dict(metadata or {}), customer_notifications=[])


def batch(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Webhook-Signature": sign(body, secret), "Content-Type": "application/json"}


def _error(status: int, kind: str, message: str, reason: str,
           **links: str) -> web.Response:
    """An error as GoCardless answers one (`{"error": {...}}`, each error with a reason)."""
    error: dict[str, Any] = {"message": message, "reason": reason}
    if links:
        error["links"] = links
    return web.json_response({"error": {
        "code": status, "type": kind, "message": message, "errors": [error],
        "documentation_url": f"https://developer.gocardless.com/api-reference#{reason}",
        "request_id": new_id("RQ")}}, status=status)


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any]
    idempotency_key: str | None


@dataclass
class GoCardlessStandIn:
    access_token: str = ACCESS_TOKEN
    base: str = ""  # where it listens, once started
    # Where its events go (none: a test delivers them), signed with this secret.
    webhook_url: str | None = None
    webhook_secret: str = SECRET
    calls: list[Call] = field(default_factory=list)
    # Answer the next API calls with these statuses (500, 429), one each.
    failures: list[int] = field(default_factory=list)
    # Seconds every API call waits before it is answered (a GoCardless that hangs).
    delay: float = 0.0
    # Make the next refund, then answer 500 as if its answer were lost on the way.
    lose_next_refund_answer: bool = False
    billing_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    mandates: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every event it made, in order (GET /events), posted or not.
    events: list[dict[str, Any]] = field(default_factory=list)
    # Asked during every API call (a test's probe of what settle holds while it waits).
    probe: Callable[[Call], Awaitable[None]] | None = None
    # API calls being answered now, and the most at once (the client's bound shows here).
    in_flight: int = 0
    most_in_flight: int = 0
    _idempotent: dict[tuple[str, str], str] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        router = app.router
        router.add_post("/billing_requests", self.create_billing_request)
        router.add_get("/billing_requests/{id}", self.get_billing_request)
        router.add_post("/billing_requests/{id}/actions/cancel", self.cancel_billing_request)
        router.add_post("/billing_request_flows", self.create_flow)
        router.add_get("/payments/{id}", self.get_payment)
        router.add_post("/refunds", self.create_refund)
        router.add_get("/refunds", self.list_refunds)
        router.add_get("/refunds/{id}", self.get_refund)
        router.add_get("/events", self.list_events)
        router.add_get("/flow/{id}", self.flow_page)
        router.add_post("/flow/{id}/setup", self.flow_setup)
        router.add_get("/_sandbox", self.payments_page)
        router.add_post("/_sandbox/payments/{id}/{action}", self.move_payment)
        router.add_post("/_sandbox/refunds/{id}/{action}", self.move_refund)
        router.add_post("/_sandbox/billing_requests/{id}/fulfil", self.fulfil_request)
        return app

    # --- the world moving on (what tests and the pages call) ------------------------------

    def payment(self, invoice_id: str, amount: int, *, currency: str = "GBP",
                status: str = "pending_submission", request_id: str | None = None,
                payment_id: str | None = None) -> dict[str, Any]:
        """A payment settle's billing request made (a test's shortcut past the flow)."""
        metadata = {"invoice_id": invoice_id}
        if request_id:
            metadata["payment_request_id"] = request_id
        payment = gocardless_object(
            "payments", id=payment_id or new_id("PM"), amount=amount, amount_refunded=0,
            currency=currency.upper(), status=status, metadata=metadata,
            created_at=now_iso(), description=f"Invoice {invoice_id}",
            links={"creditor": "CR123", "mandate": new_id("MD")})
        self.payments[payment["id"]] = payment
        return payment

    def _event(self, resource_type: str, action: str, resource: dict[str, Any],
               **links: str) -> dict[str, Any]:
        made = gocardless_event(resource_type, action, metadata=resource.get("metadata"),
                                **links)
        self.events.append(made)
        return made

    def move(self, payment_id: str, action: str) -> list[dict[str, Any]]:
        """A payment moves on (PAYMENT_MOVES); the events GoCardless would send."""
        payment = self.payments[payment_id]
        status, said = PAYMENT_MOVES[action]
        payment["status"] = status
        return [self._event("payments", said, payment, payment=payment_id)]

    def move_refund_to(self, refund_id: str, status: str) -> list[dict[str, Any]]:
        refund = self.refunds[refund_id]
        refund["status"] = status
        self._refunded_again(refund["links"]["payment"])
        return [self._event("refunds", status, refund, refund=refund_id,
                            payment=refund["links"]["payment"])]

    def fulfil(self, request_id: str) -> list[dict[str, Any]]:
        """The customer set up the Direct Debit: the billing request is fulfilled, its
        mandate and its payment made (`pending_submission`)."""
        request = self.billing_requests[request_id]
        if request["status"] != "pending":
            raise ValueError(f"billing request {request_id} is {request['status']}")
        wanted = request["payment_request"]
        mandate = gocardless_object("mandates", id=new_id("MD"), status="pending_submission",
                                    created_at=now_iso(), metadata={},
                                    links={"creditor": "CR123", "customer": new_id("CU")})
        self.mandates[mandate["id"]] = mandate
        payment = gocardless_object(
            "payments", id=new_id("PM"), amount=wanted["amount"], amount_refunded=0,
            currency=wanted["currency"], status="pending_submission",
            description=wanted.get("description"), metadata=dict(wanted.get("metadata") or {}),
            created_at=now_iso(), links={"creditor": "CR123", "mandate": mandate["id"]})
        self.payments[payment["id"]] = payment
        request["status"] = "fulfilled"
        request["links"].update(mandate_request_mandate=mandate["id"],
                                payment_request_payment=payment["id"])
        return [self._event("billing_requests", "fulfilled", request,
                            billing_request=request_id),
                self._event("mandates", "created", mandate, mandate=mandate["id"]),
                self._event("payments", "created", payment, payment=payment["id"])]

    def signed_batch(self, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        body = batch(*events)
        return body, signed(body, self.webhook_secret)

    async def post_events(self, events: list[dict[str, Any]]) -> bool:
        """Sign and post one batch to the webhook, retrying briefly as GoCardless does;
        whether it was taken (200)."""
        if not self.webhook_url or not events:
            return False
        body, headers = self.signed_batch(events)
        async with aiohttp.ClientSession() as http:
            for attempt in range(5):
                try:
                    async with http.post(self.webhook_url, data=body, headers=headers) as r:
                        if r.status == 200:
                            return True
                        log.warning("webhook refused", extra={"status": r.status})
                except aiohttp.ClientError as exc:
                    log.warning("webhook unreachable", extra={"error": str(exc)})
                await asyncio.sleep(0.5 * (attempt + 1))
        return False

    def forget_idempotency_keys(self) -> None:
        self._idempotent.clear()

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    def _refunded_again(self, payment_id: str) -> None:
        """A payment's amount_refunded: its refunds that did not fail."""
        payment = self.payments.get(payment_id)
        if payment is not None:
            payment["amount_refunded"] = sum(
                r["amount"] for r in self.refunds.values()
                if r["links"]["payment"] == payment_id and r["status"] not in REFUND_UNDONE)

    # --- the API ----------------------------------------------------------------------

    async def _call(self, request: web.Request) -> Call | web.Response:
        """The call recorded, after the stand-in's own delay and failures; its answer when
        it is refused (a wrong token, a failure asked for)."""
        if request.headers.get("Authorization") != f"Bearer {self.access_token}":
            return _error(401, "invalid_api_usage", "Invalid token", "invalid_token")
        body: dict[str, Any] = {}
        if request.method == "POST" and request.can_read_body:
            body = await request.json()
        call = Call(request.method, request.path, body if request.method == "POST"
                    else dict(request.query), request.headers.get("Idempotency-Key"))
        self.calls.append(call)
        if self.probe is not None:
            await self.probe(call)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.failures:
            status = self.failures.pop(0)
            if status == 429:
                return _error(429, "invalid_api_usage", "Rate limit exceeded",
                              "rate_limit_exceeded")
            return _error(status, "gocardless", "Something went wrong (the stand-in)",
                          "internal_server_error")
        return call

    def _replayed(self, call: Call) -> web.Response | None:
        """A creation whose Idempotency-Key made something before: GoCardless's 409."""
        if call.idempotency_key is None:
            return None
        made = self._idempotent.get((call.path, call.idempotency_key))
        if made is None:
            return None
        fixture = _fixtures()["idempotent_creation_conflict_error"]["error"]
        return _error(409, "invalid_state", fixture["message"], "idempotent_creation_conflict",
                      conflicting_resource_id=made)

    def _remember(self, call: Call, resource_id: str) -> None:
        if call.idempotency_key is not None:
            self._idempotent[(call.path, call.idempotency_key)] = resource_id

    @staticmethod
    def _not_found(kind: str) -> web.Response:
        return _error(404, "invalid_api_usage", f"No such {kind}", "resource_not_found")

    async def create_billing_request(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        if isinstance(call, web.Response):
            return call
        replayed = self._replayed(call)
        if replayed is not None:
            return replayed
        params = call.body.get("billing_requests") or {}
        wanted = params.get("payment_request") or {}
        metadata = params.get("metadata") or {}
        if any(len(m) > 3 for m in (metadata, wanted.get("metadata") or {})):
            return _error(422, "validation_failed", "Validation failed", "metadata_too_many_keys")
        made = gocardless_object(
            "billing_requests", id=new_id("BRQ"), status="pending", created_at=now_iso(),
            metadata=metadata, actions=[], resources={},
            payment_request={"amount": int(wanted["amount"]), "currency": wanted["currency"],
                             "description": wanted.get("description"),
                             "metadata": wanted.get("metadata") or {}, "links": {},
                             "scheme": "faster_payments", "funds_settlement": "managed"},
            mandate_request={**gocardless_object("billing_requests")["mandate_request"],
                             "currency": (params.get("mandate_request") or {}).get("currency"),
                             "links": {}, "metadata": {}},
            links={"creditor": "CR123", "payment_request": new_id("PRQ"),
                   "mandate_request": new_id("MRQ")})
        for unused in ("instalment_schedule_request", "subscription_request"):
            made.pop(unused, None)
        self.billing_requests[made["id"]] = made
        self._remember(call, made["id"])
        return web.json_response({"billing_requests": made}, status=201)

    async def get_billing_request(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        if isinstance(call, web.Response):
            return call
        found = self.billing_requests.get(request.match_info["id"])
        if found is None:
            return self._not_found("billing request")
        return web.json_response({"billing_requests": found})

    async def cancel_billing_request(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        if isinstance(call, web.Response):
            return call
        found = self.billing_requests.get(request.match_info["id"])
        if found is None:
            return self._not_found("billing request")
        if found["status"] in ("fulfilled", "cancelled"):
            return _error(422, "invalid_state", f"Billing request is {found['status']}",
                          f"billing_request_{found['status']}")
        found["status"] = "cancelled"
        return web.json_response({"billing_requests": found})

    async def create_flow(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        if isinstance(call, web.Response):
            return call
        replayed = self._replayed(call)
        if replayed is not None:
            return replayed
        params = call.body.get("billing_request_flows") or {}
        request_id = (params.get("links") or {}).get("billing_request")
        if request_id not in self.billing_requests:
            return _error(422, "invalid_api_usage", "No such billing request",
                          "billing_request_not_found")
        flow_id = new_id("BRF")
        flow = gocardless_object(
            "billing_request_flows", id=flow_id, created_at=now_iso(),
            expires_at=now_iso(timedelta(days=7)), authorisation_url=f"{self.base}/flow/{flow_id}",
            redirect_uri=params.get("redirect_uri"), exit_uri=params.get("exit_uri"),
            links={"billing_request": request_id},
            prefilled_customer=params.get("prefilled_customer") or {})
        self.flows[flow_id] = flow
        self._remember(call, flow_id)
        return web.json_response({"billing_request_flows": flow}, status=201)

    async def get_payment(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        if isinstance(call, web.Response):
            return call
        found = self.payments.get(request.match_info["id"])
        if found is None:
            return self._not_found("payment")
        return web.json_response({"payments": found})

    async def create_refund(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        if isinstance(call, web.Response):
            return call
        replayed = self._replayed(call)
        if replayed is not None:
            return replayed
        params = call.body.get("refunds") or {}
        payment = self.payments.get((params.get("links") or {}).get("payment", ""))
        if payment is None:
            return _error(422, "invalid_api_usage", "No such payment", "payment_not_found")
        amount = int(params["amount"])
        if params.get("total_amount_confirmation") != payment["amount_refunded"] + amount:
            return _error(422, "invalid_state", "The total amount confirmation does not match",
                          "total_amount_confirmation_invalid")
        refund = gocardless_object(
            "refunds", id=new_id("RF"), amount=amount, currency=payment["currency"],
            status="created", created_at=now_iso(), metadata=params.get("metadata") or {},
            links={"payment": payment["id"], "mandate": payment["links"].get("mandate")})
        refund.pop("fx", None)
        self.refunds[refund["id"]] = refund
        self._refunded_again(payment["id"])
        self._remember(call, refund["id"])
        await self._emit([self._event("refunds", "created", refund, refund=refund["id"],
                                      payment=payment["id"])])
        if self.lose_next_refund_answer:
            self.lose_next_refund_answer = False
            return _error(500, "gocardless", "lost on the way", "internal_server_error")
        return web.json_response({"refunds": refund}, status=201)

    async def get_refund(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        if isinstance(call, web.Response):
            return call
        found = self.refunds.get(request.match_info["id"])
        if found is None:
            return self._not_found("refund")
        return web.json_response({"refunds": found})

    @staticmethod
    def _listed(name: str, items: list[dict[str, Any]], limit: int) -> web.Response:
        return web.json_response({name: items[:limit], "meta": {
            "cursors": {"before": None, "after": None}, "limit": limit}})

    async def list_refunds(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        if isinstance(call, web.Response):
            return call
        wanted = request.query.get("payment")
        found = [r for r in self.refunds.values() if r["links"]["payment"] == wanted]
        return self._listed("refunds", found, int(request.query.get("limit", "50")))

    async def list_events(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        if isinstance(call, web.Response):
            return call
        query = request.query
        found = [e for e in reversed(self.events)
                 if ("action" not in query or e["action"] == query["action"])
                 and ("resource_type" not in query or e["resource_type"] == query["resource_type"])
                 and all(e["links"].get(name) == query[name]
                         for name in ("payment", "refund", "billing_request", "mandate")
                         if name in query)]
        return self._listed("events", found, int(query.get("limit", "50")))

    # --- moving things on: JSON for tests, forms for a person ----------------------------

    async def _emit(self, events: list[dict[str, Any]], hold: bool = False) -> bool:
        return False if hold else await self.post_events(events)

    @staticmethod
    def _held(request: web.Request) -> bool:
        return request.query.get("hold", "").lower() in ("1", "true", "yes")

    async def _answer(self, request: web.Request, events: list[dict[str, Any]]) -> web.Response:
        """A form (a person's button) goes back to the payments page; a test gets JSON."""
        posted = await self._emit(events, self._held(request))
        if request.content_type == "application/x-www-form-urlencoded":
            raise web.HTTPSeeOther("/_sandbox")
        return web.json_response({"events": events, "posted": posted})

    async def move_payment(self, request: web.Request) -> web.Response:
        payment_id, action = request.match_info["id"], request.match_info["action"]
        if payment_id not in self.payments or action not in PAYMENT_MOVES:
            raise web.HTTPNotFound(text="No such payment or move")
        return await self._answer(request, self.move(payment_id, action))

    async def move_refund(self, request: web.Request) -> web.Response:
        refund_id, action = request.match_info["id"], request.match_info["action"]
        if refund_id not in self.refunds or action not in REFUND_MOVES:
            raise web.HTTPNotFound(text="No such refund or move")
        return await self._answer(request, self.move_refund_to(refund_id, action))

    async def fulfil_request(self, request: web.Request) -> web.Response:
        request_id = request.match_info["id"]
        if request_id not in self.billing_requests:
            raise web.HTTPNotFound(text="No such billing request")
        try:
            events = self.fulfil(request_id)
        except ValueError as refused:
            raise web.HTTPConflict(text=str(refused)) from None
        return await self._answer(request, events)

    # --- the pages a person sees ---------------------------------------------------------

    @staticmethod
    def _page(title: str, body: str) -> web.Response:
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title></head>"
            "<body style=\"font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto;"
            " padding: 0 1rem\"><main>"
            "<p style=\"color: #8a4b00\">GoCardless stand-in: no real money moves.</p>"
            f"<h1>{html.escape(title)}</h1>{body}</main></body></html>"))

    async def flow_page(self, request: web.Request) -> web.Response:
        flow = self.flows.get(request.match_info["id"])
        if flow is None:
            raise web.HTTPNotFound(text="No such billing request flow")
        billing_request = self.billing_requests[flow["links"]["billing_request"]]
        wanted = billing_request["payment_request"]
        amount = money(wanted["amount"], wanted["currency"].lower())
        exit_uri = html.escape(flow.get("exit_uri") or "", quote=True)
        back = f"<p><a href=\"{exit_uri}\">Cancel and go back</a></p>" if exit_uri else ""
        if billing_request["status"] != "pending":
            return self._page(f"Pay {amount} by Direct Debit",
                              f"<p>This billing request is {html.escape(billing_request['status'])}"
                              f".</p>{back}")
        fid = html.escape(flow["id"])
        return self._page(f"Pay {amount} by Direct Debit", (
            f"<p>{html.escape(wanted.get('description') or '')}</p>"
            f"<form method=\"post\" action=\"/flow/{fid}/setup\">"
            "<p><label>Account holder <input name=\"holder\" value=\"Ada Lovelace\"></label></p>"
            "<p><label>Sort code <input name=\"sort_code\" value=\"20-00-00\"></label></p>"
            "<p><label>Account number <input name=\"account\" value=\"55779911\"></label></p>"
            "<button id=\"set-up\">Set up the Direct Debit</button></form>" + back))

    async def flow_setup(self, request: web.Request) -> web.Response:
        flow = self.flows.get(request.match_info["id"])
        if flow is None:
            raise web.HTTPNotFound(text="No such billing request flow")
        try:
            events = self.fulfil(flow["links"]["billing_request"])
        except ValueError:
            raise web.HTTPSeeOther(f"/flow/{flow['id']}") from None
        await self._emit(events)
        raise web.HTTPSeeOther(flow.get("redirect_uri") or f"/flow/{flow['id']}")

    async def payments_page(self, request: web.Request) -> web.Response:
        def form(path: str, action: str) -> str:
            label = action.replace("_", " ").capitalize()
            # An id per button (`PM…-confirmed`), so a person's script (or a test) finds it.
            button = html.escape(f"{path.rsplit('/', 1)[1]}-{action}", quote=True)
            return (f"<form method=\"post\" action=\"{html.escape(path)}/{action}\" "
                    f"style=\"display: inline\"><button id=\"{button}\">{html.escape(label)}"
                    "</button></form> ")

        rows = []
        for payment in reversed(list(self.payments.values())):
            pid = payment["id"]
            buttons = "".join(form(f"/_sandbox/payments/{pid}", action)
                              for action in BUTTONS.get(payment["status"], ()))
            rows.append(f"<tr><td>{html.escape(pid)}</td>"
                        f"<td>{html.escape(payment['metadata'].get('invoice_id', ''))}</td>"
                        f"<td>{html.escape(money(payment['amount'], payment['currency'].lower()))}</td>"
                        f"<td>{html.escape(payment['status'])}</td><td>{buttons}</td></tr>")
        for refund in reversed(list(self.refunds.values())):
            rid = refund["id"]
            buttons = "".join(form(f"/_sandbox/refunds/{rid}", action) for action in ("paid", "failed")
                              if refund["status"] not in ("paid", *REFUND_UNDONE))
            rows.append(f"<tr><td>{html.escape(rid)} (refund of "
                        f"{html.escape(refund['links']['payment'])})</td><td></td>"
                        f"<td>{html.escape(money(refund['amount'], refund['currency'].lower()))}</td>"
                        f"<td>{html.escape(refund['status'])}</td><td>{buttons}</td></tr>")
        table = ("<table><thead><tr><th>Payment</th><th>Invoice</th><th>Amount</th>"
                 "<th>Status</th><th>Move it on</th></tr></thead><tbody>"
                 + "".join(rows) + "</tbody></table>") if rows else "<p>No payments yet.</p>"
        return self._page("Payments", "<p>Each button moves a payment on as its bank would, "
                          "and GoCardless's events for it are posted to settle.</p>" + table)
