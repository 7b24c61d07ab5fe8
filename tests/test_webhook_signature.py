"""Every way a Stripe-Signature can be wrong is a 400 and records nothing."""

from __future__ import annotations

import hashlib
import hmac
import time

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import with_stripe
from sandbox.events import SECRET, event, signed, stripe_object
from worker.app import create_app
from core.settings import Settings


def body() -> bytes:
    raw, _ = signed(event("checkout.session.completed", stripe_object("checkout.session")))
    return raw


def v1(raw: bytes, secret: str, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()


async def count(db: asyncpg.Pool) -> int:
    return int(await db.fetchval("select count(*) from events"))


async def post(client: TestClient, raw: bytes, header: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    response = await client.post("/webhooks/stripe", data=raw, headers=headers)
    return response.status


async def test_valid_signature_is_accepted(client: TestClient, db: asyncpg.Pool) -> None:
    raw = body()
    t = int(time.time())
    assert await post(client, raw, f"t={t},v1={v1(raw, SECRET, t)}") == 200
    assert await count(db) == 1


@pytest.mark.parametrize("header", [
    None,                                   # missing
    "",                                     # empty
    "garbage",                              # malformed
    "t=,v1=abc",                            # no timestamp value
    "t=abc,v1=abc",                         # timestamp not a number
    "t=１２３,v1=abc",                      # non-ASCII digits
    "v1=deadbeef",                          # no timestamp at all
    "t=" + "9" * 40 + ",v1=00",             # absurd timestamp
    "t=1,v1=" + "a" * 5000,                 # oversized header
], ids=["missing", "empty", "garbage", "empty-t", "alpha-t", "unicode-t", "no-t", "long-t",
        "oversized"])
async def test_malformed_signature_header_is_400(client: TestClient, db: asyncpg.Pool,
                                                 header: str | None) -> None:
    assert await post(client, body(), header) == 400
    assert await count(db) == 0


async def test_wrong_secret_is_400(client: TestClient, db: asyncpg.Pool) -> None:
    raw, t = body(), int(time.time())
    assert await post(client, raw, f"t={t},v1={v1(raw, 'whsec_someone_else', t)}") == 400
    assert await count(db) == 0


async def test_tampered_body_is_400(client: TestClient, db: asyncpg.Pool) -> None:
    raw, t = body(), int(time.time())
    header = f"t={t},v1={v1(raw, SECRET, t)}"
    tampered = raw.replace(b'"amount_total"', b'"amount_totaI"')
    assert tampered != raw
    assert await post(client, tampered, header) == 400
    assert await count(db) == 0


async def test_tampered_timestamp_is_400(client: TestClient, db: asyncpg.Pool) -> None:
    raw, t = body(), int(time.time())
    assert await post(client, raw, f"t={t + 1},v1={v1(raw, SECRET, t)}") == 400


@pytest.mark.parametrize("offset,expected", [
    (-301, 400), (-299, 200), (299, 200), (301, 400), (-86400, 400), (86400, 400),
], ids=["stale", "old-but-fresh", "slightly-future", "future", "day-old", "day-ahead"])
async def test_timestamp_tolerance_both_ways(client: TestClient, db: asyncpg.Pool,
                                             offset: int, expected: int) -> None:
    raw = body()
    t = int(time.time()) + offset
    assert await post(client, raw, f"t={t},v1={v1(raw, SECRET, t)}") == expected
    assert await count(db) == (1 if expected == 200 else 0)


async def test_v0_signature_alone_is_not_enough(client: TestClient, db: asyncpg.Pool) -> None:
    raw, t = body(), int(time.time())
    assert await post(client, raw, f"t={t},v0={v1(raw, SECRET, t)}") == 400
    assert await count(db) == 0


async def test_any_of_several_v1_values_may_match(client: TestClient, db: asyncpg.Pool) -> None:
    raw, t = body(), int(time.time())
    header = f"t={t},v1={'0' * 64},v0={'1' * 64},v1={v1(raw, SECRET, t)},v1=zz"
    assert await post(client, raw, header) == 200
    assert await count(db) == 1


async def test_rotation_accepts_either_secret(aiohttp_client: object, settings: Settings,
                                              db: asyncpg.Pool) -> None:
    rotating = with_stripe(settings, webhook_secrets=("whsec_old", "whsec_new"))
    client = await aiohttp_client(create_app(rotating))  # type: ignore[operator]
    t = int(time.time())
    for secret in ("whsec_old", "whsec_new"):
        raw = body()
        assert await post(client, raw, f"t={t},v1={v1(raw, secret, t)}") == 200
    raw = body()
    assert await post(client, raw, f"t={t},v1={v1(raw, SECRET, t)}") == 400
    assert await count(db) == 2


async def test_without_secrets_nothing_is_accepted(aiohttp_client: object, settings: Settings,
                                                   db: asyncpg.Pool) -> None:
    client = await aiohttp_client(create_app(with_stripe(settings, webhook_secrets=())))  # type: ignore[operator]
    raw, t = body(), int(time.time())
    for secret in (SECRET, ""):
        assert await post(client, raw, f"t={t},v1={v1(raw, secret, t)}") == 400
    assert await count(db) == 0


async def test_error_body_names_the_problem(client: TestClient) -> None:
    response = await client.post("/webhooks/stripe", data=body())
    assert response.status == 400
    payload = await response.json()
    assert payload["error"]["code"] == "signature_invalid"
    assert payload["error"]["message"]
