"""docs/api.md's route table is what the OpenAPI document says, so it never goes stale.

`SETTLE_UPDATE_DOCS=1` writes the table into the page instead of checking it.
"""

from __future__ import annotations

import os

from aiohttp.test_utils import TestClient

from handlers.apidoc import BEGIN, END, route_table, with_table
from tests.conftest import ROOT

PAGE = ROOT / "docs" / "api.md"


async def test_the_route_table_in_docs_api_md_is_the_documents(client: TestClient) -> None:
    document = await (await client.get("/v1/openapi.json")).json()
    table = route_table(document)
    page = PAGE.read_text()
    assert BEGIN in page and END in page
    if os.environ.get("SETTLE_UPDATE_DOCS") == "1":
        PAGE.write_text(with_table(page, table))
        page = PAGE.read_text()
    assert table in page, "docs/api.md is stale: run this test with SETTLE_UPDATE_DOCS=1"
    # Every route and each of its error codes is on the page.
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert f"| `{method.upper()}` | `{path}` |" in page
            for answer in operation["responses"].values():
                for code in answer.get("content", {}).get("application/json", {}).get(
                        "schema", {}).get("properties", {}).get("error", {}).get(
                        "properties", {}).get("code", {}).get("enum", []):
                    assert f"`{code}`" in page
