"""The API's routes, each declared once beside its handler with what it takes and answers.

A module keeps a `Routes` table and decorates each handler with its method,
path, request body, query, answers and domain errors; `add_to(app)` feeds the
router from the table and records every declaration in the app's `Catalogue`,
which `handlers.openapi` turns into the OpenAPI document. A route is served
only through its declaration, so the document cannot leave one out (and
`tests/test_openapi.py` holds every `/v1` route of the router against it).

The handler's docstring is the operation's summary (first line) and
description (the rest).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Ref = type[BaseModel] | tuple[type[BaseModel], str]


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    tag: str
    # Each success status and the model of its body (None: the answer has no body).
    answers: Mapping[int, type[BaseModel] | None]
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    # Domain refusals beyond what the models' checks give: status -> codes.
    errors: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    # The answer whose key the path's {id} is (for the document's links): its model, or
    # (its model, where in it: "items/0/id").
    on: Ref | None = None
    # Body fields taken from another answer (for the document's links): field -> the
    # answer model whose key it is, or (that model, the field of it).
    refs: Mapping[str, Ref] = field(default_factory=dict)
    # Served without a bearer token.
    public: bool = False

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


class Catalogue:
    """Every declared operation of one application, in the order it was added."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []
        # The paths served without a token (handlers.middleware.api_auth asks).
        self.public: set[str] = set()
        # Filled in once, by handlers.openapi, the first time the document is asked for.
        self.document: dict[str, Any] | None = None


CATALOGUE = web.AppKey("catalogue", Catalogue)


class Routes:
    """A module's routes, declared with decorators (like aiohttp's `RouteTableDef`)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def route(self, method: str, path: str, *, answers: Mapping[int, type[BaseModel] | None],
              body: type[BaseModel] | None = None, body_required: bool = True,
              query: type[BaseModel] | None = None,
              errors: Mapping[int, tuple[str, ...]] | None = None,
              on: Ref | None = None,
              refs: Mapping[str, Ref] | None = None,
              public: bool = False) -> Callable[[Handler], Handler]:
        def declare(handler: Handler) -> Handler:
            self.operations.append(Operation(
                method, path, handler, self.tag, answers, body, body_required, query,
                errors or {}, on, refs or {}, public))
            return handler

        return declare

    def get(self, path: str, **described: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **described)

    def put(self, path: str, **described: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **described)

    def post(self, path: str, **described: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **described)

    def delete(self, path: str, **described: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **described)

    def add_to(self, app: web.Application) -> None:
        if CATALOGUE not in app:
            app[CATALOGUE] = Catalogue()
        for op in self.operations:
            app.router.add_route(op.method, op.path, op.handler)
            app[CATALOGUE].operations.append(op)
            if op.public:
                app[CATALOGUE].public.add(op.path)
