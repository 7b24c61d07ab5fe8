"""settle's calls to GoCardless, through the official `gocardless-pro` client.

`gocardless-pro` is synchronous (requests). Every call runs on this processor's own
`ThreadPoolExecutor` of `THREADS` threads, never on the event loop, and is bounded
twice: requests' own `timeout` (the client's, per connect and per read) frees the
thread, and `asyncio.timeout` bounds the wait, both at the processor's `timeout`
(`core.services.network_timeout`: well inside the job). A call still queued for a
thread when its wait ends is cancelled before it starts. The client's own retries are
off (`max_network_retries` 1: one attempt), as settle retries with its backoff and an
idempotency key. `GOCARDLESS_API_BASE` points the client at the sandbox or a stand-in
(`base_url`); nothing else in settle knows GoCardless's hosts.

GoCardless's errors leave this module as `core.errors.Unavailable` (unreachable, a
timeout, a 429, GoCardless's own 5xx: try again) or `PermanentError` with GoCardless's
message (a refused request: `invalid_state`, `validation_failed`, an unknown id). The
token is never in either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import gocardless_pro
import requests
from gocardless_pro import errors

from core.errors import PermanentError, Unavailable
from core.processor import (
    InboundEvent,
    PaymentState,
    RefundMade,
    SessionMade,
    SessionSpec,
    SessionState,
)
from core.settings import Settings
from processors.gocardless.events import (
    CHECKOUT_STATUSES,
    METHOD,
    PAYMENT_STATUSES,
    checkout_payment,
    link,
    moment,
    read_batch,
    refund_status,
)
from processors.gocardless.settings import LIVE_API, NAME, gocardless_settings
from processors.gocardless.signature import verify

log = logging.getLogger("settle.gocardless")

T = TypeVar("T")

# The threads GoCardless's calls run on, per process. A worker runs up to 20 jobs at once
# (worker.runner.WorkerSettings.max_jobs), few of them GoCardless calls at any moment;
# 8 lets those run side by side, and bounds what a GoCardless that stopped answering can
# hold: 8 threads, each freed within one timeout, however many jobs ask (the rest wait
# their turn within their own time limit, then fail as Unavailable and are retried).
THREADS = 8

# The currencies GoCardless collects (CONTRACT §6) and its default transaction limits, in
# minor units (GoCardless's "Transactions and fees" FAQ: Bacs £1-£5,000, SEPA €1-€5,000,
# Autogiro 10-50,000 kr, Betalingsservice 10-50,000 kr, BECS and BECS NZ 2-10,000, PAD
# 2-5,000). ACH (usd) is not in that table: its least amount as the others', its largest
# left to GoCardless, whose refusal the pages answer too (never a 500). GoCardless raises
# an account's limit on request; this table is its default.
LIMITS: dict[str, tuple[int, int | None]] = {
    "gbp": (100, 500_000), "eur": (100, 500_000), "sek": (1_000, 5_000_000),
    "dkk": (1_000, 5_000_000), "aud": (200, 1_000_000), "nzd": (200, 1_000_000),
    "cad": (200, 500_000), "usd": (100, None),
}
# GoCardless takes at most 3 metadata keys, each value at most 500 characters.
MAX_METADATA_KEYS = 3
MAX_METADATA_VALUE = 500
# Where the customer is sent back to, with the billing request's id (`return_url`).
SESSION_MARK = "{billing_request}"
# GoCardless's hosted pages, by the API they belong to.
PAY_PAGES = {LIVE_API: "https://pay.gocardless.com",
             "https://api-sandbox.gocardless.com": "https://pay-sandbox.gocardless.com"}


def _major(amount: int) -> str:
    whole, fraction = divmod(amount, 100)
    return f"{whole}.{fraction:02d}"


def _message(error: errors.ApiError) -> str:
    try:
        return str(error)
    except (KeyError, TypeError):  # an error list without messages
        return str(error.message or error.type or "refused")


def _translated(error: Exception) -> Exception:
    """GoCardless's (or requests') error as settle's: passes, or does not."""
    if isinstance(error, requests.RequestException):
        # ConnectionError, Timeout (connect or read) and the rest of requests' own.
        return Unavailable(f"GoCardless: {error.__class__.__name__}")
    if isinstance(error, (errors.RateLimitError, errors.GoCardlessInternalError)):
        return Unavailable(f"GoCardless: {error.__class__.__name__}")
    if isinstance(error, errors.MalformedResponseError):
        status = error.status_code
        if status is None or status >= 500 or status == 429:
            return Unavailable(f"GoCardless answered HTTP {status}")
        return PermanentError(f"GoCardless answered HTTP {status} with no error body")
    if isinstance(error, errors.ApiError):
        if isinstance(error.code, int) and error.code >= 500:
            return Unavailable(f"GoCardless: HTTP {error.code}")
        return PermanentError(f"GoCardless: {_message(error)}")
    if isinstance(error, errors.GoCardlessProError):
        return PermanentError(f"GoCardless: {error}")
    return error


def _metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Metadata as GoCardless takes it: no empty value, at most 3 keys (more is a bug)."""
    kept = {k: v[:MAX_METADATA_VALUE] for k, v in metadata.items() if v}
    if len(kept) > MAX_METADATA_KEYS:
        raise PermanentError(f"GoCardless takes at most {MAX_METADATA_KEYS} metadata keys, "
                             f"not {sorted(kept)}")
    return kept


class GoCardlessProcessor:
    """The `core.processor.Processor` for GoCardless (Direct Debit)."""

    name = NAME
    # GoCardless's convention for a delivery whose signature does not match.
    signature_refused_status = 498

    def __init__(self, *, access_token: str | None, api_base: str = LIVE_API,
                 webhook_secrets: Sequence[str] = (), timeout: float = 20,
                 threads: int = THREADS) -> None:
        self.webhook_secrets = tuple(webhook_secrets)
        self.timeout = timeout
        base = api_base.rstrip("/")
        parts = urlsplit(base)
        self._pay_origin = PAY_PAGES.get(base, f"{parts.scheme}://{parts.netloc}")
        self._client = gocardless_pro.Client(
            access_token=access_token, base_url=base, timeout=timeout,
            # A repeated Idempotency-Key is answered here (the resource it made is
            # fetched as its own call, within its own time limit).
            raise_on_idempotency_conflict=True) if access_token else None
        self._executor = ThreadPoolExecutor(max_workers=threads,
                                            thread_name_prefix="gocardless")
        self.threads = threads

    # --- what the seam asks of it -----------------------------------------------------

    @property
    def configured(self) -> bool:
        return self._client is not None

    @property
    def checkout_origins(self) -> tuple[str, ...]:
        # GoCardless's pay pages, or a stand-in's own origin (it serves its pages there).
        return (self._pay_origin,)

    @property
    def way(self) -> str:
        """How a customer pays through it (the choice of CONTRACT §6)."""
        return "direct_debit"

    def takes(self, currency: str) -> bool:
        return currency.lower() in LIMITS

    # GoCardless remembers an idempotency key for 30 days (its API reference, "Idempotency
    # keys"); a refund retried later asks first (`find_refund`), and its
    # `total_amount_confirmation` refuses a second refund made in ignorance of the first.
    idempotency_window = timedelta(days=30)

    def return_url(self, page: str) -> str:
        """GoCardless sends the customer back to `redirect_uri` as given, naming nothing:
        `create_checkout` writes the billing request's id where this marks it."""
        return f"{page}?session={SESSION_MARK}"

    def unit_refused(self, amount: int, currency: str) -> str | None:
        # Every currency GoCardless takes moves in its minor unit: any whole amount does.
        if not self.takes(currency):
            return f"GoCardless does not collect {currency.upper()}"
        return None

    def amount_refused(self, amount: int, currency: str) -> str | None:
        code = currency.lower()
        if not self.takes(code):
            return f"GoCardless does not collect {code.upper()}"
        least, most = LIMITS[code]
        if amount < least:
            return f"GoCardless collects at least {_major(least)} {code.upper()}"
        if most is not None and amount > most:
            return f"GoCardless collects at most {_major(most)} {code.upper()}"
        return None

    async def close(self) -> None:
        # Calls still queued are cancelled; a running one ends within its timeout.
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- calling GoCardless --------------------------------------------------------------

    def _service(self, name: str) -> Any:
        """One of the client's services, making one attempt per call (settle retries)."""
        if self._client is None:
            raise PermanentError("GOCARDLESS_ACCESS_TOKEN is not set")
        service = getattr(self._client, name)
        service.max_network_retries = 1
        return service

    async def _call(self, what: str, call: Callable[[], T]) -> T:
        """`call` on this processor's threads, within the timeout; settle's errors out."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                return await loop.run_in_executor(self._executor, call)
        except TimeoutError:
            raise Unavailable(f"GoCardless: {what} took longer than {self.timeout:g}s") from None
        except Exception as error:
            translated = _translated(error)
            if translated is error:
                raise
            raise translated from error

    async def _get(self, service: str, identity: str) -> dict[str, Any]:
        resource = await self._call(f"GET /{service}/{identity}",
                                    lambda: self._service(service).get(identity))
        return dict(resource.attributes)

    async def _create(self, service: str, params: dict[str, Any],
                      key: str | None) -> dict[str, Any]:
        """POST /{service} under an Idempotency-Key: the resource it made, or, when the key
        made one before (GoCardless's 409 `idempotent_creation_conflict`), that one. With
        no key the client makes one per call (a resource that cannot be fetched again)."""
        headers = {"Idempotency-Key": key} if key else None
        try:
            resource = await self._call(
                f"POST /{service}",
                lambda: self._service(service).create(params=params, headers=headers))
        except PermanentError as refused:
            conflict = refused.__cause__
            if not isinstance(conflict, errors.IdempotentCreationConflictError):
                raise
            return await self._get(service, conflict.conflicting_resource_id)
        return dict(resource.attributes)

    # --- the webhook ---------------------------------------------------------------------

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        verify(body, headers.get("Webhook-Signature"), self.webhook_secrets)

    def parse(self, body: bytes) -> list[InboundEvent]:
        return read_batch(body)

    async def fetch(self, event_type: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """What GoCardless says now of the resource a notice names, enveloped as its API
        answers (`{"payments": {...}}`). For a payment's `failed`, also whether it was ever
        confirmed (its `confirmed` event exists): a failure after confirmation is a late
        failure, whatever order settle heard the two in."""
        resource_type, _, action = event_type.partition(".")
        if resource_type == "payments":
            payment_id = link(payload, "payment")
            fetched: dict[str, Any] = {"payments": await self._get("payments", payment_id)}
            if action == "failed":
                fetched["confirmed_before"] = await self._was_confirmed(payment_id)
            return fetched
        if resource_type == "refunds":
            return {"refunds": await self._get("refunds", link(payload, "refund"))}
        if resource_type == "billing_requests":
            return {"billing_requests": await self._get("billing_requests",
                                                        link(payload, "billing_request"))}
        return None

    async def _was_confirmed(self, payment_id: str) -> bool:
        found = await self._call(
            f"GET /events?payment={payment_id}&action=confirmed",
            lambda: self._service("events").list(
                params={"payment": payment_id, "action": "confirmed", "limit": 1}))
        return bool(found.records)

    # --- checkout: a billing request and its flow ---------------------------------------

    async def create_checkout(self, spec: SessionSpec) -> SessionMade:
        currency = spec.currency.upper()
        metadata = _metadata(spec.metadata)
        request = await self._create("billing_requests", {
            "payment_request": {"amount": spec.amount, "currency": currency,
                                "description": f"Invoice {spec.invoice_number}"[:255],
                                "metadata": metadata},
            "mandate_request": {"currency": currency},
            "metadata": metadata,
        }, spec.idempotency_key)
        request_id = str(request["id"])
        flow = await self._create("billing_request_flows", {
            "redirect_uri": spec.success_url.replace(SESSION_MARK, request_id),
            "exit_uri": spec.cancel_url,
            "prefilled_customer": {"email": spec.customer_email},
            "links": {"billing_request": request_id},
        # A flow is only ever created (GoCardless has no GET of one): each call makes a new
        # one for the same billing request, which is what a second visit needs anyway.
        }, None)
        url = flow.get("authorisation_url")
        if not isinstance(url, str) or not url:
            raise PermanentError("GoCardless made a billing request flow without a url")
        expires = moment(flow.get("expires_at"))
        return SessionMade(request_id, url, int(expires.timestamp()) if expires else None)

    async def retrieve_checkout(self, session_id: str) -> SessionState:
        request = await self._get("billing_requests", session_id)
        status = CHECKOUT_STATUSES.get(str(request.get("status")), "open")
        wanted = request.get("payment_request") or {}
        made = checkout_payment(request)
        paid = False
        if status == "complete" and made is not None:
            payment = await self._get("payments", made.payment_id)
            paid = PAYMENT_STATUSES.get(str(payment.get("status")), "processing") == "succeeded"
        metadata = wanted.get("metadata") or request.get("metadata") or {}
        return SessionState(
            id=session_id, status=status, paid=paid,
            payment_id=made.payment_id if made else None,
            amount=made.amount if made else int(wanted.get("amount") or 0),
            currency=made.currency if made else str(wanted.get("currency") or "").lower(),
            metadata={k: v for k, v in metadata.items() if isinstance(v, str)},
            method=METHOD)

    async def expire_checkout(self, session_id: str, key: str) -> str:
        """Cancel an open billing request; one no longer open says what it is."""
        try:
            await self._call(
                f"POST /billing_requests/{session_id}/actions/cancel",
                # An action, not a creation: no idempotency key is needed (`key` unused);
                # cancelling twice is refused as invalid_state, answered below.
                lambda: self._service("billing_requests").cancel(session_id))
        except PermanentError as refused:
            if not isinstance(refused.__cause__, errors.InvalidStateError):
                raise
            # Fulfilled or cancelled already: GoCardless refuses to cancel it.
            request = await self._get("billing_requests", session_id)
            status = CHECKOUT_STATUSES.get(str(request.get("status")))
            if status is None:
                raise
            return status
        return "expired"

    # --- payments and refunds ----------------------------------------------------------

    async def retrieve_payment(self, payment_id: str) -> PaymentState:
        payment = await self._get("payments", payment_id)
        status = PAYMENT_STATUSES.get(str(payment.get("status")), "processing")
        return PaymentState(payment_id, status, int(payment.get("amount") or 0),
                            str(payment.get("currency") or "").lower(), method=METHOD)

    async def refund(self, payment_id: str, amount: int, key: str,
                     metadata: Mapping[str, str]) -> RefundMade:
        """POST /refunds with the refund's key as Idempotency-Key. GoCardless asks for the
        payment's refunded total including this one (`total_amount_confirmation`), so two
        refunds made unaware of each other are refused: it is read from the payment."""
        payment = await self._get("payments", payment_id)
        refunded = int(payment.get("amount_refunded") or 0)
        refund = await self._create("refunds", {
            "amount": amount, "total_amount_confirmation": refunded + amount,
            "links": {"payment": payment_id}, "metadata": _metadata(metadata),
        }, key)
        return _made(refund)

    async def find_refund(self, payment_id: str, key: str) -> RefundMade | None:
        found = await self._call(
            f"GET /refunds?payment={payment_id}",
            lambda: self._service("refunds").list(params={"payment": payment_id,
                                                          "limit": 500}))
        for refund in found.records:
            metadata = refund.attributes.get("metadata") or {}
            if metadata.get("settle_key") == key:
                return _made(dict(refund.attributes))
        return None


def _made(refund: Mapping[str, Any]) -> RefundMade:
    return RefundMade(str(refund["id"]), refund_status(refund.get("status")),
                      moment(refund.get("created_at")))


def make(settings: Settings, timeout: float) -> GoCardlessProcessor:
    """The processor as the settings configure it (the wiring's registration)."""
    own = gocardless_settings(settings)
    return GoCardlessProcessor(access_token=own.access_token, api_base=own.api_base,
                               webhook_secrets=own.webhook_secrets, timeout=timeout)
