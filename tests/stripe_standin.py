"""A local stand-in for the Stripe API calls settle makes, reached through the real
`stripe` client (`STRIPE_API_BASE`). Objects are shaped from Stripe's own fixtures.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.stripe_events import stripe_object


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
    _idempotent: dict[str, web.Response] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/refunds", self.create_refund)
        return app

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
            return self._idempotent[call.idempotency_key]
        refund = stripe_object(
            "refund", id=f"re_{uuid.uuid4().hex[:24]}", amount=int(call.params["amount"]),
            payment_intent=call.params.get("payment_intent"), status="succeeded",
            metadata={k[9:-1]: v for k, v in call.params.items() if k.startswith("metadata[")},
        )
        response = web.json_response(refund)
        if call.idempotency_key:
            self._idempotent[call.idempotency_key] = web.json_response(refund)
        return response
