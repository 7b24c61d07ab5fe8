"""Unexpected errors: logged once with their traceback, answered in the contract's shape.

Expected, transient trouble (a database refusing connections) stays one warning
line without a traceback. No log line carries a token, a signature or a secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from core.logs import JsonFormatter
from sandbox.events import SECRET, session_completed, signed
from tests.service import TOKEN, Service


class Lines(logging.Handler):
    """Every record as the JSON line a process would write to stderr."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The test server's access log names every path; `settle web` runs without one.
        if record.name != "aiohttp.access":
            self.lines.append(self.format(record))

    @property
    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def tracebacks(self) -> int:
        return sum(line.count("Traceback (most recent call last)") for line in self.lines)

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def logs() -> Iterator[Lines]:
    lines = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(lines)
    root.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        root.removeHandler(lines)
        root.setLevel(level)


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom: sk_live_not_for_anyone")


def refused(*args: Any, **kwargs: Any) -> Any:
    raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")


async def test_unexpected_error_on_any_route_is_logged_once_and_answered_500(
        svc: Service, logs: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    await svc.invoice("inv_1", 10_000)
    monkeypatch.setattr("ledger.invoices.get_invoice", boom)
    answer = await svc.call("GET", "/v1/invoices/inv_1", expect=500)
    assert answer["error"]["code"] == "internal"
    assert "boom" not in json.dumps(answer) and "sk_live" not in json.dumps(answer)
    assert logs.tracebacks() == 1
    [logged] = [e for e in logs.entries if "exc" in e]
    assert logged["level"] == "error" and "RuntimeError: boom" in logged["exc"]
    assert (logged["method"], logged["route"]) == ("GET", "/v1/invoices/{id}")
    assert TOKEN not in logs.text()


async def test_database_trouble_on_a_route_is_one_warning_line_and_a_503(
        svc: Service, logs: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    async def starting_up(*args: Any, **kwargs: Any) -> Any:
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    monkeypatch.setattr("ledger.invoices.get_invoice", starting_up)
    answer = await svc.call("GET", "/v1/invoices/inv_1", expect=503)
    assert answer["error"]["code"] == "unavailable"
    assert logs.tracebacks() == 0
    [warned] = [e for e in logs.entries if e["level"] == "warning"]
    assert warned["error"] == "CannotConnectNowError" and warned["route"] == "/v1/invoices/{id}"


@pytest.mark.parametrize("failure,tracebacks", [(boom, 1), (refused, 0)])
async def test_webhook_not_recorded_logs_a_traceback_only_when_unexpected(
        svc: Service, logs: Lines, monkeypatch: pytest.MonkeyPatch, failure: Any,
        tracebacks: int) -> None:
    async def record(*args: Any, **kwargs: Any) -> Any:
        failure()

    monkeypatch.setattr("handlers.intake.record_events", record)
    raw, headers = signed(session_completed("inv_1", 4_000, "pi_1"))
    response = await svc.client.post("/webhooks/stripe", data=raw, headers=headers)
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "unavailable"
    assert logs.tracebacks() == tracebacks
    [entry] = [e for e in logs.entries if e["msg"] == "webhook not recorded"]
    assert entry["level"] == ("error" if tracebacks else "warning")
    assert ("exc" in entry) == bool(tracebacks)
    for secret in (headers["Stripe-Signature"], SECRET, "v1="):
        assert secret not in logs.text()


@pytest.mark.parametrize("step", ["link_choice", "open_link"])
@pytest.mark.parametrize("failure,tracebacks", [(boom, 1), (refused, 0)])
async def test_pay_link_unavailable_logs_a_traceback_only_when_unexpected(
        svc: Service, logs: Lines, monkeypatch: pytest.MonkeyPatch, failure: Any,
        tracebacks: int, step: str) -> None:
    """Whether what the link pays is read (link_choice) or its checkout made (open_link)
    when the database or the processor fails."""
    async def failing(*args: Any, **kwargs: Any) -> Any:
        failure()

    await svc.invoice("inv_1", 4_000)
    # The invoice's Pay Now link (no processor is configured, so the API shows no pay_url).
    token = await svc.db.fetchval("select pay_token from invoices where id = 'inv_1'")
    monkeypatch.setattr(f"ledger.checkout.{step}", failing)
    response = await svc.client.get(f"/pay/{token}", allow_redirects=False)
    assert response.status == 503
    assert logs.tracebacks() == tracebacks
    [entry] = [e for e in logs.entries if e["msg"] == "pay link unavailable"]
    assert entry["level"] == ("error" if tracebacks else "warning")
    assert token not in logs.text()
