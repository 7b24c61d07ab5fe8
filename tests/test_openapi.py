"""The API described and fuzzed (docs/api.md): `GET /v1/openapi.json` is a valid OpenAPI
3.1 document of every /v1 route, a client generated from it works, and schemathesis,
run against the live `web` process, finds no 5xx and no answer outside the document.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from core.settings import Settings
from delivery.outbound import EVENT_TYPES, PING
from handlers.messages import MESSAGES, event_types
from handlers.models import EventType
from tests.conftest import ROOT, SETTLE, free_port, process_env, with_stripe
from tests.service import AUTH, TOKEN

BIN = Path(sys.executable).parent
# The types settle owes (delivery.outbound, the one list the books use) and the ping.
OUTBOUND_TYPES = set(EVENT_TYPES) | {PING}


async def served(client: TestClient) -> dict[str, Any]:
    response = await client.get("/v1/openapi.json")  # no token
    assert response.status == 200, await response.text()
    document: dict[str, Any] = await response.json()
    return document


async def test_the_document_is_served_without_a_token_and_is_valid_openapi_3_1(
        client: TestClient) -> None:
    document = await served(client)
    validate(document)  # raises on anything that is not OpenAPI 3.1
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "one of the tokens in API_TOKENS"}
    # Only the document is public: the rest of /v1 still wants a token.
    refused = await client.get("/v1/invoices")
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "unauthorized"


async def test_every_v1_route_the_app_serves_is_in_the_document(client: TestClient) -> None:
    document = await served(client)
    served_routes = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path") or ""
        if path.startswith("/v1/") and route.method != "HEAD":
            served_routes.add((route.method.lower(), path))
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    assert served_routes - described == set()
    assert described - served_routes == set()
    assert len(described) >= 25


async def test_every_answer_and_error_is_described(client: TestClient) -> None:
    document = await served(client)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert any(status.startswith("2") for status in responses), (method, path)
            if path != "/v1/openapi.json":
                unauthorized = responses["401"]["content"]["application/json"]["schema"]
                assert unauthorized["properties"]["error"]["properties"]["code"]["enum"] == [
                    "unauthorized"]
            if "{id}" in path:
                codes = responses["422"]["content"]["application/json"]["schema"]
                assert "id_invalid" in codes["properties"]["error"]["properties"]["code"]["enum"]
    put_invoice = document["paths"]["/v1/invoices/{id}"]["put"]
    codes = put_invoice["responses"]["422"]["content"]["application/json"]["schema"]
    assert {"total_invalid", "currency_invalid", "input_invalid", "email_invalid",
            "customer_not_found"} <= set(codes["properties"]["error"]["properties"]["code"]["enum"])
    # A customer links to its invoice, the invoice to its payment request.
    links = document["paths"]["/v1/customers/{id}"]["put"]["responses"]["201"]["links"]
    assert links["put_invoice"]["requestBody"] == {"customer_id": "$response.body#/id"}
    links = put_invoice["responses"]["201"]["links"]
    assert links["create_request"]["parameters"] == {"path.id": "$response.body#/id"}


async def test_a_body_past_the_limit_is_413_in_the_documented_shape(client: TestClient) -> None:
    document = await served(client)
    put_customer = document["paths"]["/v1/customers/{id}"]["put"]["responses"]
    assert "413" in put_customer
    response = await client.put("/v1/customers/cus_big", data=b'{"email": "' + b"a" * 2**21,
                                headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"


async def test_the_webhooks_section_describes_every_outbound_message(client: TestClient) -> None:
    document = await served(client)
    assert set(document["webhooks"]) == OUTBOUND_TYPES
    assert {t for m in MESSAGES for t in event_types(m)} == OUTBOUND_TYPES
    # What an endpoint may subscribe to is the same list.
    assert set(get_args(EventType)) == set(EVENT_TYPES)
    paid = document["webhooks"]["invoice.paid"]["post"]
    assert {p["name"] for p in paid["parameters"]} == {
        "webhook-id", "webhook-timestamp", "webhook-signature"}
    invoice_data = document["components"]["schemas"]["InvoiceData"]
    assert {"sequence", "amount_remaining", "status"} <= set(invoice_data["required"])


def test_each_message_carries_the_types_of_its_object() -> None:
    """`invoice.*` are invoice messages, and so on: no type is told with another's data."""
    for message in MESSAGES:
        objects = {t.split(".")[0] for t in event_types(message)}
        assert len(objects) == 1, message.__name__


def test_the_receivers_page_lists_every_type_and_no_other() -> None:
    """docs/webhooks.md's table of types: each type settle sends once, and nothing else."""
    page = (ROOT / "docs" / "webhooks.md").read_text()
    table = page[page.index("| type | `data` | when |"):].split("\n\n", 1)[0]
    listed = re.findall(r"^\| `([a-z_.]+)` \|", table, re.MULTILINE)
    assert sorted(listed) == sorted(OUTBOUND_TYPES)


# The contract's types (CONTRACT §9) that settle does not send yet: each goes from here
# into `delivery.outbound.EVENT_TYPES` the day it is built.
NOT_YET_SENT = {"invoice.uncollectible", "invoice.plan_updated", "charge.succeeded",
                "charge.failed", "charge.requires_action", "payment_method.saved",
                "payment_method.revoked", "credit_request.paid"}


# The types §9 of the contract lists, as it lists them. The contract lives outside the
# repository (a clone alone must pass `make test`), so its list is copied here: the one
# place the contract's words are kept, and checked against settle's own list below.
CONTRACT_TYPES = {
    "invoice.sent", "invoice.partially_paid", "invoice.paid", "invoice.reopened",
    "invoice.overdue", "invoice.voided", "payment.processing", "payment.succeeded",
    "payment.failed", "payment.refunded", "payment_request.created", "payment_request.paid",
    "payment_request.superseded", "payment_request.cancelled", "credit_note.created",
    "customer.credit_changed", "invoice.uncollectible", "invoice.plan_updated",
    "payment.reversed", "charge.succeeded", "charge.failed", "charge.requires_action",
    "payment_method.saved", "payment_method.revoked", "credit_request.paid", "ping"}


def test_settle_sends_the_contracts_types_and_names_none_of_its_own() -> None:
    assert NOT_YET_SENT <= CONTRACT_TYPES
    assert CONTRACT_TYPES - NOT_YET_SENT == OUTBOUND_TYPES


# --- against the live web process ------------------------------------------------------


@pytest.fixture(scope="module")
def live(database_url: str, redis_url: str, smtp_server: Any) -> Iterator[str]:
    """`settle web` on a free port, a processor configured (so payment requests can be
    made); nothing answers at the processor's address, so a call to it would show."""
    settings = with_stripe(Settings(database_url=database_url, redis_url=redis_url,
                                    queue_name=f"settle-openapi-{uuid.uuid4().hex[:8]}",
                                    api_tokens=(TOKEN,), smtp_host="127.0.0.1",
                                    smtp_port=smtp_server[1]),
                           api_key="sk_test_unreachable",
                           api_base=f"http://127.0.0.1:{free_port()}")
    port = free_port()
    web = subprocess.Popen([SETTLE, "web"], env=process_env(settings, PORT=str(port)),
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    break
            except OSError:
                if web.poll() is not None:
                    raise AssertionError(web.stderr.read() if web.stderr else "web died")
                time.sleep(0.1)
        yield base
    finally:
        web.terminate()
        web.communicate(timeout=20)


def test_a_generated_client_creates_an_invoice_and_reads_it_back(
        live: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = f"settle_client_{uuid.uuid4().hex[:6]}"
    with urllib.request.urlopen(f"{live}/v1/openapi.json") as answer:
        (tmp_path / "openapi.json").write_bytes(answer.read())
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    made = subprocess.run([str(BIN / "openapi-python-client"), "generate", "--path",
                           str(tmp_path / "openapi.json"), "--meta", "none",
                           "--output-path", str(tmp_path / package)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    api = importlib.import_module(package)
    put_customer = importlib.import_module(f"{package}.api.invoices.put_customer")
    put_invoice = importlib.import_module(f"{package}.api.invoices.put_invoice")
    get_invoice = importlib.import_module(f"{package}.api.invoices.get_invoice")
    models = importlib.import_module(f"{package}.models")

    client = api.AuthenticatedClient(base_url=live, token=TOKEN)
    customer = put_customer.sync_detailed(
        "cus_gen", client=client, body=models.CustomerIn(email="gen@example.com", name="Gen"))
    assert customer.status_code in (200, 201), customer.content
    created = put_invoice.sync_detailed("inv_gen", client=client, body=models.InvoiceIn(
        customer_id="cus_gen", number="G-1", currency="usd", total=12_345))
    assert created.status_code in (200, 201), created.content
    read = get_invoice.sync("inv_gen", client=client)
    assert isinstance(read, models.Invoice)
    assert (read.id, read.customer_id, read.total, read.amount_remaining, read.status) == (
        "inv_gen", "cus_gen", 12_345, 12_345, "draft")
    # An unknown id comes back as the documented error, typed.
    missing = get_invoice.sync_detailed("inv_nobody", client=client)
    assert missing.status_code == 404
    assert missing.parsed.error.code == "not_found"


# The chain the contract tells (§5): a customer, an invoice for it, sent, a payment request;
# and the merchant's money on the sent invoice: a payment, its refund, a credit note.
CHAIN = ("put_customer", "put_invoice", "send_invoice", "create_request", "get_request",
         "resend_request", "cancel_request", "record_payment", "refund_payment", "get_refund",
         "issue_credit_note")


# The chain's own bound: its scenarios (tests/schemathesis.toml's stateful max-examples)
# end it on a quiet machine; on a busy one, 10 s left too few of them to reach a payment
# request, so the wall-clock bound is a generous one. The run over every route has
# tests/schemathesis.toml's max-time.
CHAIN_SECONDS = 40


def schemathesis_run(live: str, report_dir: Path, *extra: str) -> tuple[str, float]:
    """A schemathesis run against the live web process with a valid token; (its output,
    how long it took). Its settings are tests/schemathesis.toml; SCHEMATHESIS_SEED and
    SCHEMATHESIS_ARGS in the environment change them for a run by hand."""
    command = [str(BIN / "schemathesis"), "--config-file", str(ROOT / "tests/schemathesis.toml"),
               "run", f"{live}/v1/openapi.json",
               "--header", f"Authorization: Bearer {TOKEN}",
               # Every check but one: a body the schema allows may still be refused by the
               # books (422 invoice_not_open, 409 active_request_exists), as the contract says.
               "--checks", "all", "--exclude-checks", "positive_data_acceptance",
               "--report", "junit", "--report-dir", str(report_dir), *extra]
    if os.environ.get("SCHEMATHESIS_SEED"):
        command += ["--seed", os.environ["SCHEMATHESIS_SEED"]]
    command += os.environ.get("SCHEMATHESIS_ARGS", "").split()
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(ROOT / "tests/schemathesis_hooks.py")}
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=report_dir,
                         env=env)
    took = time.monotonic() - started
    (report_dir / "schemathesis.out").write_text(run.stdout)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    return run.stdout, took


def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(
        live: str, tmp_path: Path, database_url: str) -> None:
    """Every route with generated bodies, headers, queries and path ids (valid and not),
    then the stateful phase along the document's links; then the stateful phase again
    over the contract's chain alone, which must create payment requests (random ids
    hardly ever name an open invoice: only following the links does)."""
    everything, took = schemathesis_run(live, tmp_path,
                                        "--report-har-path", str(tmp_path / "requests.har"))
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅  {phase}" in everything, everything[-5000:]
    # A webhook endpoint's url has a valid example, so generated PUTs create endpoints and
    # its lifecycle is reached past 404 and 422: each of its operations answered a 2xx.
    answered = _answered(tmp_path / "requests.har")
    for operation in ENDPOINT_LIFECYCLE:
        assert any(200 <= status < 300 for status in answered.get(operation, ())), (
            operation, sorted(set(answered.get(operation, ()))))
    (tmp_path / "chain").mkdir()
    before = asyncio.run(_count(database_url, "select count(*) from payment_requests"))
    chain, chain_took = schemathesis_run(
        live, tmp_path / "chain", "--phases", "stateful", "--max-time", str(CHAIN_SECONDS),
        *(arg for name in CHAIN for arg in ("--include-operation-id", name)))
    lifecycle = {f"{m} {p or '{id}'}": sum(200 <= s < 300 for s in answered[(m, p)])
                 for m, p in ENDPOINT_LIFECYCLE}
    print(f"schemathesis took {took:.1f} s over every route, {chain_took:.1f} s on the chain; "
          f"webhook endpoint 2xx answers {lifecycle}")
    made = asyncio.run(_count(database_url, "select count(*) from payment_requests"))
    assert made > before, chain[-5000:]


ENDPOINT_LIFECYCLE = (("PUT", ""), ("GET", ""), ("POST", "/rotate-secret"), ("POST", "/ping"),
                      ("GET", "/messages"), ("DELETE", ""))
_ENDPOINT_PATH = re.compile(r"^/v1/webhook-endpoints/[^/]+(/rotate-secret|/ping|/messages)?$")


def _answered(har: Path) -> dict[tuple[str, str], list[int]]:
    """The statuses each operation on one webhook endpoint answered in a recorded run
    (method, the path after the endpoint's id)."""
    answered: dict[tuple[str, str], list[int]] = {}
    for entry in json.loads(har.read_text())["log"]["entries"]:
        matched = _ENDPOINT_PATH.match(urlsplit(entry["request"]["url"]).path)
        if matched:
            operation = (entry["request"]["method"], matched.group(1) or "")
            answered.setdefault(operation, []).append(entry["response"]["status"])
    return answered


async def _count(database_url: str, sql: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()
