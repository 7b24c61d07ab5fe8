"""Structured logs: one JSON object per line on stderr.

Callers pass facts in `extra={...}`; nothing here ever sees a request's
headers, so a `Stripe-Signature`, an API token or a secret cannot leak.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else came from `extra`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # what orjson will not write (an integer past 64 bits)
            return json.dumps(entry, default=str)


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()


def quiet_libraries() -> None:
    """Libraries that say too much, or what must not be said, below WARNING."""
    # arq logs every job start and finish at INFO; ours say more, once.
    logging.getLogger("arq").setLevel(logging.WARNING)
    # fontTools (under fpdf2) narrates every table of the PDF's font at DEBUG.
    logging.getLogger("fontTools").setLevel(logging.WARNING)
