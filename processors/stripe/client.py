"""settle's calls to Stripe, through the real `stripe` package, async over aiohttp.

`STRIPE_API_BASE` points the client at a sandbox or a local stand-in through
its own `base_addresses`; nothing else in settle knows Stripe's hosts. Stripe's
errors leave this module as `core.errors.Unavailable` (network trouble, rate
limits, Stripe's own 5xx: try again) or `PermanentError` (a refused request).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import stripe

from core import json_body
from core.errors import PermanentError, Unavailable
from core.settings import Settings
from core.processor import (
    BadEvent,
    InboundEvent,
    PaymentState,
    RefundMade,
    SessionMade,
    SessionSpec,
    SessionState,
)
from ledger.money import THREE_DECIMAL, exponent
from processors.stripe.events import invoice_reference, moment, payment_method, refund_status
from processors.stripe.settings import stripe_settings
from processors.stripe.signature import verify

MAX_ID_LENGTH = 255

# stripe logs whole requests and answers at DEBUG: a Checkout Session's success_url
# holds the invoice page's token, and tokens never reach a log. Set on import, so in
# every process that can make this processor, whatever logging is configured after.
logging.getLogger("stripe").setLevel(logging.WARNING)

# Stripe's "Minimum and maximum charge amounts" (docs.stripe.com/currencies#minimum-and-
# maximum-charge-amounts), in minor units. Stripe holds the minimum in the account's
# settlement currency, which settle does not know: this checks the charge's own currency,
# right for an account that settles in it. A currency missing here is left to Stripe,
# whose refusal the pages answer too (never a 500).
MINIMUM_CHARGE = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50,
    "czk": 1_500, "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17_500, "inr": 50,
    "jpy": 50, "mxn": 1_000, "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200,
    "sek": 300, "sgd": 50, "thb": 1_000,
}
# "The amount value supports up to eight digits" ($999,999.99 for USD).
MAXIMUM_CHARGE = 99_999_999


def _major(amount: int, currency: str) -> str:
    """An amount in the currency's major unit, for a person to read (0.50, 50)."""
    digits = exponent(currency)
    whole, fraction = divmod(amount, 10**digits)
    return f"{whole}.{fraction:0{digits}d}" if digits else str(whole)


def _translated(error: stripe.StripeError) -> Exception:
    """Stripe's error as settle's: passes (Unavailable) or does not (PermanentError)."""
    if isinstance(error, (stripe.APIConnectionError, stripe.RateLimitError)) \
            or (error.http_status or 500) >= 500:
        return Unavailable(f"Stripe: {error.__class__.__name__}")
    return PermanentError(f"{error.__class__.__name__}: {error.user_message or error}")


class StripeProcessor:
    """The `core.processor.Processor` for Stripe."""

    name = "stripe"
    signature_refused_status = 400

    def __init__(self, *, api_key: str | None, api_base: str | None,
                 webhook_secrets: Sequence[str], tolerance: int, timeout: float = 20) -> None:
        self.webhook_secrets = tuple(webhook_secrets)
        base = urlsplit(api_base) if api_base else None
        self._checkout_origin = f"{base.scheme}://{base.netloc}" if base \
            else "https://checkout.stripe.com"
        self.tolerance = tolerance
        self._http = stripe.AIOHTTPClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else {},
            http_client=self._http,
            # settle retries through its outbox with an idempotency key; no hidden retries.
            max_network_retries=0,
        ) if api_key else None

    @property
    def configured(self) -> bool:
        return self._client is not None

    # How a customer pays through Stripe Checkout, as settle offers it (its bank transfers
    # come along inside Checkout, not as a way of their own).
    way = "card"

    def takes(self, currency: str) -> bool:
        # Every currency settle takes: what Stripe refuses of an amount is amount_refused's.
        return True

    @property
    def checkout_origins(self) -> tuple[str, ...]:
        # A sandbox or stand-in at STRIPE_API_BASE serves its checkout pages there too.
        return (self._checkout_origin,)

    # Stripe keeps an idempotency key for 24 hours.
    idempotency_window = timedelta(hours=24)

    def return_url(self, page: str) -> str:
        # Stripe puts the session's id where its template says.
        return f"{page}?session={{CHECKOUT_SESSION_ID}}"

    def _api(self) -> stripe.StripeClient:
        if self._client is None:
            raise PermanentError("STRIPE_API_KEY is not set")
        return self._client

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # --- the webhook -----------------------------------------------------------------

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        verify(body, headers.get("Stripe-Signature"), self.webhook_secrets,
               tolerance=self.tolerance, now=now)

    def parse(self, body: bytes) -> list[InboundEvent]:
        """A Stripe delivery is one event: a list of one."""
        try:
            event = json_body.read(body)
        except (ValueError, RecursionError):
            raise BadEvent("body is not UTF-8 JSON") from None
        text = body.decode("utf-8")  # what the row stores: the body as it came
        if not isinstance(event, dict):
            raise BadEvent("body is not a JSON object")
        if json_body.may_be_unstorable(body) and not json_body.storable(event):
            # Decided here, before the intake: PostgreSQL would refuse the row (and with it
            # the other deliveries written in the same statement).
            raise BadEvent("event holds \\u0000 or a lone surrogate")
        event_id, event_type = event.get("id"), event.get("type")
        for name, value in (("id", event_id), ("type", event_type)):
            if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
                raise BadEvent(f"event has no valid {name}")
        return [InboundEvent(cast(str, event_id), cast(str, event_type),
                             invoice_reference(event), text)]

    async def fetch(self, event_type: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """Stripe's events carry their object: nothing to fetch."""
        return None

    def unit_refused(self, amount: int, currency: str) -> str | None:
        # Stripe moves three-decimal currencies in multiples of ten minor units, charges
        # and refunds alike ("the least-significant digit must be 0").
        if currency.lower() in THREE_DECIMAL and amount % 10:
            return (f"Stripe charges {currency.upper()} only in multiples of 10 "
                    f"(0.010 {currency.upper()})")
        return None

    def amount_refused(self, amount: int, currency: str) -> str | None:
        code = currency.lower()
        least = MINIMUM_CHARGE.get(code, 1)
        if amount < least:
            return f"Stripe charges at least {_major(least, code)} {code.upper()}"
        if amount > MAXIMUM_CHARGE:
            return f"Stripe charges at most {_major(MAXIMUM_CHARGE, code)} {code.upper()}"
        return self.unit_refused(amount, currency)

    # --- Checkout Sessions -----------------------------------------------------------

    async def create_checkout(self, spec: SessionSpec) -> SessionMade:
        try:
            session = await self._api().v1.checkout.sessions.create_async(
                {
                    "mode": "payment",
                    "line_items": [{
                        "quantity": 1,
                        "price_data": {
                            "currency": spec.currency,
                            "unit_amount": spec.amount,
                            "product_data": {"name": f"Invoice {spec.invoice_number}"},
                        },
                    }],
                    "metadata": spec.metadata,
                    "payment_intent_data": {"metadata": spec.metadata},
                    "customer_email": spec.customer_email,
                    "success_url": spec.success_url,
                    "cancel_url": spec.cancel_url,
                },
                {"idempotency_key": spec.idempotency_key},
            )
        except stripe.StripeError as error:
            raise _translated(error) from error
        if not session.url:
            raise PermanentError("Stripe returned a session without a url")
        return SessionMade(session.id, session.url, session.expires_at)

    async def retrieve_checkout(self, session_id: str) -> SessionState:
        try:
            # Its PaymentIntent and that one's charge expanded: what says how it was paid
            # (the session itself lists every way it offered).
            session = await self._api().v1.checkout.sessions.retrieve_async(
                session_id, {"expand": ["payment_intent.latest_charge"]})
        except stripe.StripeError as error:
            raise _translated(error) from error
        intent: Any = session.payment_intent
        # "no_payment_required": nothing was owed, so the session is paid.
        paid = session.status == "complete" \
            and session.payment_status in ("paid", "no_payment_required")
        return SessionState(
            id=session.id, status=session.status or "open", paid=paid,
            payment_id=intent if isinstance(intent, str) or intent is None else intent.id,
            amount=session.amount_total or 0, currency=session.currency or "",
            metadata=cast(dict[str, str], session.metadata.to_dict() if session.metadata else {}),
            method=payment_method(session.to_dict(), asynchronous=session.status == "complete"
                                  and not paid) if session.status == "complete" else None,
        )

    async def expire_checkout(self, session_id: str, key: str) -> str:
        client = self._api()
        try:
            try:
                session = await client.v1.checkout.sessions.expire_async(
                    session_id, options={"idempotency_key": key})
            except stripe.InvalidRequestError:
                # Stripe refuses to expire a session that is complete or already expired.
                session = await client.v1.checkout.sessions.retrieve_async(session_id)
                if session.status == "open":
                    raise
        except stripe.StripeError as error:
            raise _translated(error) from error
        return session.status or "expired"

    # --- payments and refunds -----------------------------------------------------------

    async def retrieve_payment(self, payment_id: str) -> PaymentState:
        try:
            intent = await self._api().v1.payment_intents.retrieve_async(payment_id)
        except stripe.StripeError as error:
            raise _translated(error) from error
        # A PaymentIntent back at requires_payment_method (or canceled) was not paid.
        status = {"succeeded": "succeeded", "requires_payment_method": "failed",
                  "canceled": "failed"}.get(intent.status or "", "processing")
        return PaymentState(intent.id, status, intent.amount_received or 0,
                            intent.currency or "", method=payment_method(intent.to_dict()))

    async def find_refund(self, payment_id: str, key: str) -> RefundMade | None:
        try:
            found = await self._api().v1.refunds.list_async(
                {"payment_intent": payment_id, "limit": 100})
        except stripe.StripeError as error:
            raise _translated(error) from error
        for refund in found.data:
            metadata = refund.metadata.to_dict() if refund.metadata else {}
            if metadata.get("settle_key") == key:
                return RefundMade(refund.id, refund_status(refund.status), moment(refund.created))
        return None

    async def refund(self, payment_id: str, amount: int, key: str,
                     metadata: Mapping[str, str]) -> RefundMade:
        try:
            refund = await self._api().v1.refunds.create_async(
                {"payment_intent": payment_id, "amount": amount, "metadata": dict(metadata)},
                {"idempotency_key": key},
            )
        except stripe.StripeError as error:
            raise _translated(error) from error
        return RefundMade(refund.id, refund_status(refund.status), moment(refund.created))


def make(settings: Settings, timeout: float) -> StripeProcessor:
    """The processor as the settings configure it (the wiring's registration)."""
    own = stripe_settings(settings)
    return StripeProcessor(api_key=own.api_key, api_base=own.api_base,
                           webhook_secrets=own.webhook_secrets,
                           tolerance=settings.webhook_tolerance_seconds, timeout=timeout)

