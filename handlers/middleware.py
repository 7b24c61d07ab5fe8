"""Bearer tokens for /v1, and domain errors mapped to the contract's error bodies."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from core.errors import DomainError
from handlers.errors import error
from handlers.keys import services


def token_accepted(header: str | None, tokens: tuple[str, ...]) -> bool:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    offered = token.strip().encode()
    matched = False
    for accepted in tokens:
        # Every token is compared, each in constant time: no early exit to time.
        matched |= hmac.compare_digest(offered, accepted.encode())
    return matched


@web.middleware
async def api_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/") and not token_accepted(
            request.headers.get("Authorization"), services(request).settings.api_tokens):
        return error(401, "unauthorized", "a valid bearer token is required")
    return await handler(request)


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as failure:
        return error(failure.status, failure.code, failure.message)
    except web.HTTPNotFound:
        return error(404, "not_found", "no such route")
    except web.HTTPMethodNotAllowed:
        return error(405, "method_not_allowed", "method not allowed on this route")
