"""The invoice PDF, made once per state of the invoice and kept (CONTRACT §11).

A PDF is a pure function of what it shows: the page's data, the merchant's name and
details, the locale. Their digest is its key in a cache bounded by bytes (the
least recently used go first); requests for a state being built wait for that one
build instead of starting their own. Builds run on their own small executor, never
the loop's default one (DNS look-ups and other `to_thread` work share that), and
only so many may wait for it: past that a caller is told `Busy` at once rather
than queued behind minutes of work.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from present import pdf

# Builds at once. A build is Python holding the GIL, so more threads would not make
# more PDFs per second; two keep one slow build from stalling every other.
WORKERS = 2
# Builds that may wait for a worker; one more is refused (`Busy`).
MOST_WAITING = 8
# The cache's bound: a few hundred ordinary invoices, or a few of 500 long lines.
MOST_BYTES = 32 * 1024 * 1024


class Busy(Exception):
    """Every worker is taken and the queue is full: ask again shortly."""


class PdfStore:
    def __init__(self, *, workers: int = WORKERS, most_waiting: int = MOST_WAITING,
                 most_bytes: int = MOST_BYTES) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="settle-pdf")
        self.most_pending = workers + most_waiting
        self.most_bytes = most_bytes
        self.kept: OrderedDict[str, bytes] = OrderedDict()
        self.kept_bytes = 0
        self.building: dict[str, asyncio.Future[bytes]] = {}
        # How many PDFs were built (tests count them; a cache hit builds none).
        self.builds = 0

    async def invoice_pdf(self, page: dict[str, Any], merchant: str, details: Sequence[str],
                          locale: str | None) -> bytes:
        key = digest(page, merchant, details, locale)
        found = self.kept.get(key)
        if found is not None:
            self.kept.move_to_end(key)
            return found
        loop = asyncio.get_running_loop()
        running = self.building.get(key)
        if running is not None and running.get_loop() is loop:
            return await asyncio.shield(running)
        if len(self.building) >= self.most_pending:
            raise Busy("too many PDFs are being made")
        self.builds += 1
        build = loop.run_in_executor(self.executor, pdf.invoice_pdf, page, merchant,
                                     tuple(details), locale)
        self.building[key] = build
        build.add_done_callback(lambda done: self._finished(key, done))
        # Shielded: a caller that goes away does not cancel what others wait for.
        return await asyncio.shield(build)

    def _finished(self, key: str, build: asyncio.Future[bytes]) -> None:
        self.building.pop(key, None)
        if not build.cancelled() and build.exception() is None:
            self._keep(key, build.result())

    def _keep(self, key: str, body: bytes) -> None:
        if len(body) > self.most_bytes // 4 or key in self.kept:
            return  # one huge PDF does not push out every other
        self.kept[key] = body
        self.kept_bytes += len(body)
        while self.kept_bytes > self.most_bytes:
            _, dropped = self.kept.popitem(last=False)
            self.kept_bytes -= len(dropped)


def digest(page: dict[str, Any], merchant: str, details: Sequence[str],
           locale: str | None) -> str:
    """The state a PDF shows, as one key: anything it shows changes it."""
    shown = json.dumps([page, merchant, list(details), locale], sort_keys=True, default=str,
                       separators=(",", ":"))
    return hashlib.sha256(shown.encode()).hexdigest()


# One per process: the web process's pages and the worker's mails each build through it.
STORE = PdfStore()
