"""The route table of docs/api.md, written from the OpenAPI document (never by hand).

`route_table(document)` renders every operation: method, path, what it does (its
summary), its success statuses and its error codes under each status. The
answers every route shares are said once, above the table. tests/test_apidoc.py
holds docs/api.md to it, so the page never goes stale; `SETTLE_UPDATE_DOCS=1`
on that test writes the page instead.
"""

from __future__ import annotations

from typing import Any

BEGIN = "<!-- route table: generated from GET /v1/openapi.json; do not edit by hand -->"
END = "<!-- end of the route table -->"
METHODS = ("get", "put", "post", "patch", "delete")


def _codes(answer: dict[str, Any]) -> list[str]:
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    code = schema.get("properties", {}).get("error", {}).get("properties", {}).get("code", {})
    return sorted(code.get("enum", []))


def _errors(operation: dict[str, Any]) -> set[tuple[str, str]]:
    return {(status, code) for status, answer in operation["responses"].items()
            if int(status) >= 400 for code in _codes(answer) or [""]}


def _said(pairs: set[tuple[str, str]]) -> str:
    parts = []
    for status in sorted({status for status, _ in pairs}):
        codes = ", ".join(f"`{code}`" for code in sorted(c for s, c in pairs if s == status and c))
        parts.append(f"`{status}` {codes}".strip())
    return "; ".join(parts)


def _sentence(operation: dict[str, Any]) -> str:
    """The summary, finished: a docstring's first line may stop mid-sentence."""
    summary = operation.get("summary", "")
    if summary.endswith(".") or not operation.get("description"):
        return str(summary)
    whole = f"{summary} {operation['description']}"
    end = whole.find(". ", len(summary))
    return whole[:end + 1] if end >= 0 else str(whole)


def route_table(document: dict[str, Any]) -> str:
    operations = [(method, path, op) for path, item in document["paths"].items()
                  for method, op in item.items() if method in METHODS]
    shared = set.intersection(*(_errors(op) for _, _, op in operations
                                if op.get("security") != []))
    lines = [BEGIN, "",
             f"Every route but the document's own may also answer {_said(shared)}.", "",
             "| method | path | what it does | success | errors |",
             "| --- | --- | --- | --- | --- |"]
    for method, path, op in operations:
        success = ", ".join(f"`{status}`" for status in op["responses"] if int(status) < 400)
        errors = _said(_errors(op) - shared) or "none"
        summary = _sentence(op).replace("|", "\\|")
        lines.append(f"| `{method.upper()}` | `{path}` | {summary} | {success} | {errors} |")
    return "\n".join([*lines, "", END])


def with_table(page: str, table: str) -> str:
    """The page with its route table replaced (the markers must be there)."""
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + table + tail
