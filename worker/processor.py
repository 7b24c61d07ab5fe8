"""The Stripe client: the real `stripe` package, async over aiohttp.

`STRIPE_API_BASE` points it at a sandbox or a local stand-in through the
client's own `base_addresses`; nothing else in settle knows Stripe's hosts.
"""

from __future__ import annotations

from typing import cast

import stripe

from ledger.checkout import CreateSession, SessionMade, SessionSpec
from ledger.inbox import PermanentError
from ledger.reconcile import RetrieveSession, SessionState
from worker.settings import Settings


def stripe_client(settings: Settings,
                  http_client: stripe.AIOHTTPClient) -> stripe.StripeClient | None:
    """None when no STRIPE_API_KEY is set: calls that need Stripe then fail, recorded.

    The caller owns `http_client` (one aiohttp session) and closes it.
    """
    if not settings.stripe_api_key:
        return None
    base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    return stripe.StripeClient(
        settings.stripe_api_key,
        base_addresses=base,  # type: ignore[arg-type]
        http_client=http_client,
        # settle retries through its outbox with an idempotency key; no hidden retries.
        max_network_retries=0,
    )


def is_transient_stripe_error(exc: BaseException) -> bool:
    """Network trouble, rate limits and Stripe's own 5xx pass; a refused request does not."""
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return True
    if isinstance(exc, stripe.StripeError):
        return (exc.http_status or 500) >= 500
    return isinstance(exc, (OSError, TimeoutError))


def session_creator(client: stripe.StripeClient | None) -> CreateSession:
    """Make Checkout Sessions as CONTRACT §6 says, through the async client."""

    async def create(spec: SessionSpec) -> SessionMade:
        if client is None:
            raise RuntimeError("STRIPE_API_KEY is not set")
        session = await client.v1.checkout.sessions.create_async(
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
        if not session.url:
            raise RuntimeError("Stripe returned a session without a url")
        return SessionMade(session.id, session.url, session.expires_at)

    return create


def session_retriever(client: stripe.StripeClient | None) -> RetrieveSession:
    """Ask Stripe what became of a Checkout Session (reconcile)."""

    async def retrieve(session_id: str) -> SessionState:
        if client is None:
            raise PermanentError("STRIPE_API_KEY is not set: sessions cannot be checked")
        try:
            session = await client.v1.checkout.sessions.retrieve_async(session_id)
        except stripe.InvalidRequestError as error:
            raise PermanentError(f"Stripe: {error.user_message or error}") from error
        intent = session.payment_intent
        return SessionState(
            id=session.id, status=session.status or "open",
            payment_status=session.payment_status,
            payment_intent=intent if isinstance(intent, str) or intent is None else intent.id,
            amount_total=session.amount_total or 0, currency=session.currency or "",
            metadata=cast(dict[str, str], session.metadata.to_dict() if session.metadata else {}),
        )

    return retrieve
