"""The invoice PDF's build time: a 500-line invoice (and a 45-line credit-note reason),
built by the builder of `main` (as `git show main:present/pdf.py` holds it) and by this
tree's, in the same run, so the figure is a ratio (`python -m bench.pdf [rounds]`).

The old builder cannot lay out a reason of 45 lines at all (an fpdf2 table row cannot
span pages): it is timed on the 500 lines alone, the new one on both.
"""

from __future__ import annotations

import subprocess
import sys
import time
import types
from datetime import UTC, datetime
from typing import Any

from bench.common import ROOT
from present import pdf


def page(lines: int = 500, reason_lines: int = 0, long: bool = False) -> dict[str, Any]:
    """An invoice page as `reads.pages.invoice_page` returns it, without a database;
    `long`: every line's description as long as the API takes (1000 characters)."""
    now = datetime(2030, 1, 2, 12, tzinfo=UTC)
    words = "consulting on the ledger " * (40 if long else 1)
    items: list[dict[str, Any]] = [
        {"description": f"Line {n}: {words}"[:1000], "amount": 1_000 + n} for n in range(lines)]
    total = sum(item["amount"] for item in items)
    return {
        "invoice": {"number": "INV-BENCH-1", "currency": "usd", "total": total,
                    "amount_paid": 2_000, "amount_credited": 0, "amount_credit_noted": 500,
                    "amount_remaining": total - 2_500, "status": "partially_paid",
                    "due_date": "2030-01-31", "lines": items,
                    "invoice_url": "http://localhost:8080/i/tok"},
        "sent_at": now, "paid_at": None, "open": True,
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com", "locale": "en"},
        "payments": [{"date": now, "source": "stripe", "method": "card", "amount": 2_000,
                      "applied": 2_000, "credited": 0, "refunded": 0, "status": "succeeded"}],
        "credit_notes": [{"created_at": now.isoformat(), "amount": 500,
                          "reason": "\n".join(f"reason line {n}" for n in range(reason_lines))
                          or "Goodwill"}],
        "pdf_name": "invoice-INV-BENCH-1.pdf",
    }


def old_builder() -> Any:
    source = subprocess.run(["git", "show", "main:present/pdf.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("old_pdf")
    exec(compile(source, "main:present/pdf.py", "exec"), module.__dict__)
    return module


def best(build: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        build()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    old = old_builder()
    details = ("Acme Ltd", "1 High Street, London", "VAT GB123456789")
    for name, shown in (("500 short lines", page()), ("500 lines of 1000 chars", page(long=True))):
        old_s = best(lambda: old.invoice_pdf(shown, "Acme", "en"), rounds)
        new_s = best(lambda: pdf.invoice_pdf(shown, "Acme", details, "en"), rounds)
        print(f"{name:24}: main's builder {old_s * 1000:6.0f} ms, this one {new_s * 1000:6.0f} ms"
              f" ({old_s / new_s:.1f}x faster)")
    reason = page(reason_lines=45)
    reason_s = best(lambda: pdf.invoice_pdf(reason, "Acme", details, "en"), rounds)
    print(f"{'+ a 45-line reason':24}: main's builder    500, this one {reason_s * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
