"""The baseline for the intake benchmark: an aiohttp endpoint that reads the body and
answers 200, at both processors' webhook paths."""

from __future__ import annotations

import sys

from aiohttp import web


async def receive(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"received": True})


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhooks/stripe", receive)
    app.router.add_post("/webhooks/gocardless", receive)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
