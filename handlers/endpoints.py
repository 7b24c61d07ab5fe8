"""Outbound webhook endpoints (CONTRACT §9): the application says where settle tells it what
happened, and reads what was sent."""

from __future__ import annotations

from aiohttp import web

from delivery import endpoints
from handlers.answers import Pinged, WebhookEndpoint, WebhookEndpointList, WebhookMessageList
from handlers.keys import books, services
from handlers.models import EndpointIn, EndpointsQuery, MessagesQuery
from handlers.routes import Routes
from handlers.validation import body, path_id, query

ROUTES = Routes("webhooks")


@ROUTES.put("/v1/webhook-endpoints/{id}", body=EndpointIn,
            answers={200: WebhookEndpoint, 201: WebhookEndpoint},
            errors={409: ("too_many_endpoints",), 422: ("url_invalid",)})
async def put_endpoint(request: web.Request) -> web.Response:
    """Create or update an endpoint; its secret is made on create and kept after. An
    account has at most 50 (`409 too_many_endpoints` for one more)."""
    endpoint_id = path_id(request)
    data = await body(request, EndpointIn)
    url = endpoints.check_url(data.url, services(request).settings.outbound_allow_private)
    view, created = await endpoints.upsert(books(request), endpoint_id,
                                           endpoints.EndpointInput(
        url, tuple(data.events) if data.events is not None else None, data.description,
        data.disabled))
    return web.json_response(view, status=201 if created else 200)


@ROUTES.get("/v1/webhook-endpoints/{id}", answers={200: WebhookEndpoint}, on=WebhookEndpoint)
async def get_endpoint(request: web.Request) -> web.Response:
    """An endpoint, with its secret."""
    return web.json_response(await endpoints.get(services(request).pool, path_id(request)))


@ROUTES.delete("/v1/webhook-endpoints/{id}", answers={204: None}, on=WebhookEndpoint)
async def delete_endpoint(request: web.Request) -> web.Response:
    """Remove an endpoint; its pending messages are not sent."""
    await endpoints.delete(books(request), path_id(request))
    return web.Response(status=204)


@ROUTES.get("/v1/webhook-endpoints", query=EndpointsQuery, answers={200: WebhookEndpointList})
async def list_endpoints(request: web.Request) -> web.Response:
    """Endpoints, newest first."""
    asked = query(request, EndpointsQuery)
    return web.json_response(await endpoints.list_endpoints(
        services(request).pool, asked.next, asked.limit))


@ROUTES.post("/v1/webhook-endpoints/{id}/rotate-secret", body_required=False,
             answers={200: WebhookEndpoint}, on=WebhookEndpoint)
async def rotate_secret(request: web.Request) -> web.Response:
    """A new secret; for 24 hours messages carry signatures by both."""
    return web.json_response(await endpoints.rotate(books(request), path_id(request)))


@ROUTES.post("/v1/webhook-endpoints/{id}/ping", body_required=False,
             answers={202: Pinged}, on=WebhookEndpoint)
async def ping_endpoint(request: web.Request) -> web.Response:
    """Send a `ping` message to the endpoint (whatever its event filter)."""
    message_id = await endpoints.ping(books(request), path_id(request))
    return web.json_response({"message_id": message_id}, status=202)


@ROUTES.get("/v1/webhook-endpoints/{id}/messages", query=MessagesQuery,
            answers={200: WebhookMessageList}, on=WebhookEndpoint)
async def endpoint_messages(request: web.Request) -> web.Response:
    """The endpoint's messages, newest first, by status."""
    asked = query(request, MessagesQuery)
    return web.json_response(await endpoints.messages(
        services(request).pool, path_id(request), asked.status, asked.next, asked.limit))


def add_routes(app: web.Application) -> None:
    ROUTES.add_to(app)
