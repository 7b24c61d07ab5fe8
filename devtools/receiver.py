"""A local webhook receiver for `make run`: the mail catcher's sibling for outbound webhooks.

    python -m devtools.receiver

It listens on 127.0.0.1:$RECEIVER_PORT (12112), registers itself with the settle
at $SETTLE_API_URL as the endpoint `dev-receiver` (every event type), then
verifies each message with the `standardwebhooks` library, as an application
would, and prints it. (The endpoint is on loopback, so `make run` sets
OUTBOUND_ALLOW_PRIVATE=true.)
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

ENDPOINT_ID = "dev-receiver"


class Receiver:
    def __init__(self) -> None:
        self.hook: Webhook | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.hook is None:
            return web.Response(status=503, text="not registered yet")
        try:
            message: dict[str, Any] = self.hook.verify(raw, dict(request.headers))
        except WebhookVerificationError as bad:
            print(f"──── webhook REFUSED: {bad}", flush=True)
            return web.Response(status=400)
        data = message.get("data", {})
        summary = {k: data[k] for k in ("status", "amount", "amount_paid", "amount_remaining",
                                         "refunded", "credit_balance", "invoice_id")
                   if k in data}
        print("\n".join([
            "",
            f"──── webhook: {message['type']} " + "─" * 40,
            f"webhook-id: {request.headers['webhook-id']}   verified "
            f"({len(request.headers['webhook-signature'].split())} signature(s))",
            f"about:      {data.get('id')}   sequence {data.get('sequence')}",
            f"data:       {json.dumps(summary)}",
        ]), flush=True)
        return web.Response(status=204)


async def register(receiver: Receiver, api: str, token: str, url: str) -> None:
    """PUT the endpoint (again: the secret is kept) once the API answers."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                async with session.put(f"{api}/v1/webhook-endpoints/{ENDPOINT_ID}",
                                       json={"url": url, "description": "make run's receiver"},
                                       headers={"Authorization": f"Bearer {token}"}) as answer:
                    if answer.status in (200, 201):
                        endpoint = await answer.json()
                        receiver.hook = Webhook(endpoint["secret"])
                        print(f"receiver: registered as webhook endpoint {ENDPOINT_ID} -> {url}",
                              flush=True)
                        return
                    print(f"receiver: registering answered {answer.status}: "
                          f"{(await answer.text())[:200]}", flush=True)
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(1)


async def serve(port: int, api: str, token: str) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/webhooks", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"receiver: listening on http://127.0.0.1:{port}/webhooks", flush=True)
    await register(receiver, api, token, f"http://127.0.0.1:{port}/webhooks")
    await asyncio.Event().wait()


def main() -> None:
    port = int(os.environ.get("RECEIVER_PORT", "12112"))
    api = os.environ.get("SETTLE_API_URL", "http://127.0.0.1:8080").rstrip("/")
    token = (os.environ.get("API_TOKENS") or "dev-token").split(",")[0].strip()
    try:
        asyncio.run(serve(port, api, token))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
