"""`GET /v1/openapi.json`: the OpenAPI 3.1 document, generated from the declared routes
(`handlers.routes`) and their pydantic models, never written by hand; served without
a token (docs/api.md says how to generate a client from it).

Per operation: its path and query parameters, its body, each success answer,
and its errors in the contract's shape with the codes it can give (`401`
without a valid token; `404 not_found` for an unknown id; `409` and `422` with
the codes the route declares and those its models' checks give). Links join
an answer to the operations on it (a customer -> its invoice -> the invoice's
payment request), for schemathesis's stateful tests and for readers. The
`webhooks` section describes the messages settle sends (§9).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from handlers.answers import Answer
from handlers.messages import MESSAGES, event_types
from handlers.routes import CATALOGUE, Operation, Ref, Routes
from handlers.validation import ID_SCHEMA, codes_of

ROUTES = Routes("meta")
REF = "#/components/schemas/{model}"
JSON = "application/json"
STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content",
               401: "No or wrong bearer token", 404: "Unknown id", 409: "State conflict",
               408: "The body did not arrive in time", 413: "Body too large", 422: "Invalid input",
               503: "A service settle needs did not answer; retry later"}
WEBHOOK_HEADERS = {
    "webhook-id": "one per message, the same on every attempt",
    "webhook-timestamp": "seconds since the epoch, at the attempt",
    "webhook-signature": "`v1,` + base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}."
                         "{body}` under the base64-decoded secret (space-separated when the "
                         "secret was rotated in the last 24 hours)",
}


class OpenApiDocument(Answer):
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


@ROUTES.get("/v1/openapi.json", answers={200: OpenApiDocument}, public=True)
async def openapi_document(request: web.Request) -> web.Response:
    """This document: the API described as OpenAPI 3.1.

    Generated from the routes and their models; no token is needed to read it.
    """
    catalogue = request.app[CATALOGUE]
    if catalogue.document is None:
        catalogue.document = document(catalogue.operations)
    return web.json_response(catalogue.document)


def add_routes(app: web.Application) -> None:
    ROUTES.add_to(app)


# --- the document ----------------------------------------------------------------------


def document(operations: list[Operation]) -> dict[str, Any]:
    models: list[type[BaseModel]] = list(MESSAGES)
    for op in operations:
        models += [m for m in (op.body, *op.answers.values()) if m is not None]
    unique = list(dict.fromkeys(models))
    keyed: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in unique]
    refs, schemas = models_json_schema(keyed, ref_template=REF)
    ref = {model: refs[(model, "validation")] for model in unique}

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, ref, operations)
    webhooks = {}
    for message in MESSAGES:
        for event_type in event_types(message):
            webhooks[event_type] = {"post": _webhook(event_type, ref[message])}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "settle",
            "version": "1",
            "summary": "Invoices paid in full or in parts through payment links; the books "
                       "kept exactly once from the processor's webhooks.",
            "description": "Money is an integer in the currency's minor unit with a lowercase "
                           "ISO 4217 code. Errors are {\"error\": {\"code\", \"message\"}}. "
                           "Ids are chosen by the caller: every PUT is an idempotent upsert, "
                           "and every POST that moves money is idempotent on its `id`.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": {**schemas.get("$defs", {}), "Error": _error_schema(None)},
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "one of the tokens in API_TOKENS"}},
        },
    }


def _operation(op: Operation, ref: dict[type[BaseModel], dict[str, Any]],
               operations: list[Operation]) -> dict[str, Any]:
    doc = (op.handler.__doc__ or "").strip()
    summary, _, description = doc.partition("\n")
    parameters = [{"name": name, "in": "path", "required": True, "schema": ID_SCHEMA}
                  for name in op.path_params]
    if op.query is not None:
        parameters += _query_parameters(op.query)
    out: dict[str, Any] = {"operationId": op.operation_id, "tags": [op.tag],
                           "summary": summary.strip()}
    if description.strip():
        out["description"] = " ".join(description.split())
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required,
                              "content": {JSON: {"schema": ref[op.body]}}}
    if op.public:
        out["security"] = []
    responses: dict[str, Any] = {}
    for status, model in op.answers.items():
        answer: dict[str, Any] = {"description": STATUS_TEXT.get(status, "OK")}
        if model is not None:
            answer["content"] = {JSON: {"schema": ref[model]}}
            links = _links(model, operations)
            if links:
                answer["links"] = links
        responses[str(status)] = answer
    for status, codes in sorted(_errors(op).items()):
        responses[str(status)] = {"description": STATUS_TEXT[status],
                                  "content": {JSON: {"schema": _error_schema(codes)}}}
    out["responses"] = responses
    return out


def _errors(op: Operation) -> dict[int, set[str]]:
    """Each error status of an operation and the codes it answers with."""
    errors: dict[int, set[str]] = {status: set(codes) for status, codes in op.errors.items()}
    if not op.public:
        errors.setdefault(401, set()).add("unauthorized")
    invalid = errors.setdefault(422, set())
    if op.path_params:
        invalid.add("id_invalid")
        # An {id} no one has written is unknown, except to a PUT, which creates it.
        if op.method != "PUT":
            errors.setdefault(404, set()).add("not_found")
    if op.body is not None:
        invalid |= codes_of(op.body) | {"input_invalid"}
        errors[413] = {"payload_too_large"}  # past aiohttp's client_max_size (1 MiB)
        errors[408] = {"request_timeout"}  # not in full within 10 s (handlers.bodies)
    if not op.public:
        # The database or Redis away (handlers.middleware.unexpected_errors).
        errors[503] = {"unavailable"}
    if op.query is not None:
        invalid |= codes_of(op.query)
    return {status: codes for status, codes in errors.items() if codes}


def _error_schema(codes: set[str] | None) -> dict[str, Any]:
    code: dict[str, Any] = {"type": "string"}
    if codes:
        code["enum"] = sorted(codes)
    return {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": code, "message": {"type": "string"}}}}}


def _query_parameters(query: type[BaseModel]) -> list[dict[str, Any]]:
    schema = query.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        prop.pop("title", None)
        if "default" in prop and prop["default"] is None:
            del prop["default"]
        # An absent parameter is how a query says "none": null is not sent as text.
        if "anyOf" in prop:
            branches = [b for b in prop.pop("anyOf") if b != {"type": "null"}]
            prop.update(branches[0] if len(branches) == 1 else {"anyOf": branches})
        # An empty value counts as absent (handlers.validation.query), as a form sends it.
        parameters.append({"name": name, "in": "query", "required": name in required,
                           "schema": {"anyOf": [prop, {"const": ""}]},
                           "description": "an empty value is the same as none"})
    return parameters


def _links(model: type[BaseModel], operations: list[Operation]) -> dict[str, Any]:
    """From an answer to every operation on it: its key as the target's path {id}, and
    its fields where the target's body names them (`Operation.refs`)."""
    links: dict[str, Any] = {}
    for target in operations:
        link: dict[str, Any] = {}
        if target.on is not None and _source(target.on)[0] is model:
            link["parameters"] = {"path.id": f"$response.body#/{_source(target.on)[1]}"}
        body = {}
        for field, ref in target.refs.items():
            named, source = _source(ref)
            if named is model:
                body[field] = f"$response.body#/{source}"
        if body:
            link["requestBody"] = body
        if link:
            links[target.operation_id] = {"operationId": target.operation_id, **link}
    return links


def _source(ref: Ref) -> tuple[type[BaseModel], str]:
    """(the answer model, where the value is in it) of a route's `on` or `refs`."""
    return ref if isinstance(ref, tuple) else (ref, getattr(ref, "KEY", "id"))


def _webhook(event_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": "webhook_" + event_type.replace(".", "_"),
        "summary": f"settle tells the application: {event_type}",
        "parameters": [{"name": name, "in": "header", "required": True,
                        "description": text, "schema": {"type": "string"}}
                       for name, text in WEBHOOK_HEADERS.items()],
        "requestBody": {"required": True, "content": {JSON: {"schema": schema}}},
        "responses": {"2XX": {"description": "delivered (any 2xx within 15 s); otherwise "
                              "tried again on the deployment's WEBHOOK_RETRY_SCHEDULE (by "
                              "default after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h), "
                              "then failed; 410 disables the endpoint"}},
        "security": [],
    }
