"""Loaded by schemathesis in tests/test_openapi.py (SCHEMATHESIS_HOOKS).

Where a scenario of the stateful phase starts. schemathesis 4.32 starts one at any POST
and at a GET without path parameters. In settle a POST on `/v1/.../{id}/...` acts on an
object that must exist (a random id is a 404), and objects begin with a PUT under the
caller's id (CONTRACT §5: every PUT is an idempotent upsert). So a scenario starts at
an operation without path parameters, or at a PUT that needs no other object (one no
link feeds a body: a customer, not an invoice, which names its customer); the rest is
reached along the document's links (a customer -> an invoice for it -> sent -> a
payment request -> ...). This patches a private function of the pinned version: should
it move, the test that loads this fails, as the chain's payment requests go missing.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.specs.openapi import stateful

_likely_root = stateful.is_likely_root_transition


def _fed_bodies(raw_schema: dict[str, Any]) -> set[str]:
    """The operationIds some link gives a request body to."""
    fed = set()
    for item in raw_schema.get("paths", {}).values():
        for operation in item.values():
            for answer in operation.get("responses", {}).values():
                for link in answer.get("links", {}).values():
                    if "requestBody" in link:
                        fed.add(link["operationId"])
    return fed


def is_likely_root_transition(operation: Any, node: Any, produced_anywhere: set[str]) -> bool:
    if not operation.path_parameters:
        return bool(_likely_root(operation, node, produced_anywhere))
    return bool(operation.method == "put" and operation.definition.raw.get("operationId")
                not in _fed_bodies(operation.schema.raw_schema))


stateful.is_likely_root_transition = is_likely_root_transition


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    """Integral floats as integers. JSON Schema counts 201.0 as an integer; settle refuses
    it (money is never a float: `total_invalid`, tested in tests/test_api_ledger.py), and
    the schema cannot say so. Every number settle reads is an integer, so this changes
    no body's validity under the document; it only keeps valid chains going."""
    return _integral(body)
