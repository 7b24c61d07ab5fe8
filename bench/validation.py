"""What checking an API body costs: settle's pydantic path against a bare JSON parse.

Run by hand: `.venv/bin/python -m bench.validation`. With msgspec installed
(`pip install msgspec`, not a dependency) it also prints a typed msgspec decode,
the alternative issue 17 asked to weigh. Figures are per body, best of five runs.
"""

from __future__ import annotations

import json
import timeit
from typing import Any, Callable

from handlers.models import InvoiceIn
from handlers.validation import decode_object, validate

BODY = json.dumps({
    "id": "inv_123", "customer_id": "cus_1", "number": "INV-2026-0001", "currency": "usd",
    "total": 10000, "due_date": "2026-12-31",
    "notify_emails": ["a@example.com", "b@example.com"]}).encode()
ROUNDS = 20_000


def per_call(fn: Callable[[], Any]) -> float:
    return min(timeit.repeat(fn, number=ROUNDS, repeat=5)) / ROUNDS


def main() -> None:
    baseline = per_call(lambda: json.loads(BODY))
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("settle: decode_object + validate (all checks)",
         lambda: validate(InvoiceIn, decode_object(BODY))),
        ("pydantic model_validate_json (same model)", lambda: InvoiceIn.model_validate_json(BODY)),
    ]
    try:
        import msgspec
    except ImportError:
        print("(msgspec not installed: pip install msgspec to compare)")
    else:
        class InvoiceStruct(msgspec.Struct, forbid_unknown_fields=True):
            id: str
            customer_id: str
            number: str
            currency: str
            total: int
            due_date: str | None = None
            kind: str = "invoice"
            notify_emails: list[str] = []
            auto_apply_credit: bool = True

        decoder = msgspec.json.Decoder(InvoiceStruct)
        cases.append(("msgspec typed decode (types only, no checks)", lambda: decoder.decode(BODY)))
    print(f"{'json.loads (baseline)':50s} {baseline * 1e6:6.1f} µs  1.00")
    for name, fn in cases:
        took = per_call(fn)
        print(f"{name:50s} {took * 1e6:6.1f} µs  {took / baseline:4.2f}")


if __name__ == "__main__":
    main()
