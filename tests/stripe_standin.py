"""A local stand-in for the Stripe API calls settle makes, reached through the real
`stripe` client (`STRIPE_API_BASE`). Objects are shaped from Stripe's own fixtures.

It also plays the customer: `pay(session_id)` completes a Checkout Session the
way Stripe does and returns the events Stripe would then send
(`checkout.session.completed`, then `payment_intent.succeeded`).
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.stripe_events import event, stripe_object


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
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    _idempotent: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/refunds", self.create_refund)
        app.router.add_post("/v1/checkout/sessions", self.create_session)
        app.router.add_get("/v1/checkout/sessions/{id}", self.retrieve_session)
        app.router.add_post("/v1/checkout/sessions/{id}/expire", self.expire_session)
        return app

    # --- the customer ---------------------------------------------------------------

    def session_for_url(self, url: str) -> dict[str, Any]:
        return self.sessions[url.rstrip("/").rsplit("/", 1)[1]]

    def pay(self, session_id: str, *, payment_status: str = "paid") -> list[dict[str, Any]]:
        """Complete an open session; the events Stripe would send, in its order."""
        session = self.sessions[session_id]
        if session["status"] != "open":
            raise AssertionError(f"session {session_id} is {session['status']}, not open")
        session.update(status="complete", payment_status=payment_status)
        public = {k: v for k, v in session.items() if not k.startswith("_")}
        events = [event("checkout.session.completed", public)]
        if payment_status == "paid":
            intent = stripe_object(
                "payment_intent", id=session["payment_intent"], amount=session["amount_total"],
                amount_received=session["amount_total"], currency=session["currency"],
                status="succeeded", metadata=dict(session["_intent_metadata"]))
            events.append(event("payment_intent.succeeded", intent))
        return events

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
        return session if isinstance(session, web.Response) else self._public(session)

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
            payment_intent=call.params.get("payment_intent"), status="succeeded",
            metadata={k[9:-1]: v for k, v in call.params.items() if k.startswith("metadata[")},
        )
        if call.idempotency_key:
            self._idempotent[call.idempotency_key] = refund
        return web.json_response(refund)
