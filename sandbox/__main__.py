"""Serve the sandbox processors: `python -m sandbox` (make run does, without the keys).

The Stripe stand-in listens on SANDBOX_PORT (12111) and signs the events a payment
produces with the first STRIPE_WEBHOOK_SECRETS secret, posting them to
SANDBOX_WEBHOOK_URL (settle's own `/webhooks/stripe` on $PORT by default). With
GOCARDLESS_SANDBOX_PORT set, the GoCardless stand-in listens there too, answering
GOCARDLESS_ACCESS_TOKEN and posting its signed batches (the first
GOCARDLESS_WEBHOOK_SECRETS secret) to GOCARDLESS_SANDBOX_WEBHOOK_URL (settle's
`/webhooks/gocardless` by default). With STRIPE_SANDBOX=false only the GoCardless one runs.
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from core import logs
from sandbox.gocardless import GoCardlessStandIn
from sandbox.stripe import StripeStandIn


def _first(name: str) -> str:
    secrets = [s.strip() for s in os.environ.get(name, "").split(",") if s.strip()]
    return secrets[0] if secrets else ""


async def serve() -> None:
    env = os.environ
    settle = f"http://127.0.0.1:{env.get('PORT', '8080')}"
    runners = []
    if env.get("STRIPE_SANDBOX", "true").lower() != "false":
        port = int(env.get("SANDBOX_PORT", "12111"))
        stripe = StripeStandIn(
            api_key=env.get("STRIPE_API_KEY", "sk_test_sandbox"),
            base=env.get("SANDBOX_PUBLIC_URL", f"http://localhost:{port}"),
            webhook_url=env.get("SANDBOX_WEBHOOK_URL", f"{settle}/webhooks/stripe"),
            webhook_secret=_first("STRIPE_WEBHOOK_SECRETS"))
        runners.append((stripe.app(), port))
        print(f"sandbox processor on {stripe.base} (checkout pages at "
              f"{stripe.base}/checkout/...)", flush=True)
    if env.get("GOCARDLESS_SANDBOX_PORT"):
        port = int(env["GOCARDLESS_SANDBOX_PORT"])
        gocardless = GoCardlessStandIn(
            access_token=env.get("GOCARDLESS_ACCESS_TOKEN", "gc_sandbox_token"),
            base=env.get("GOCARDLESS_SANDBOX_PUBLIC_URL", f"http://localhost:{port}"),
            webhook_url=env.get("GOCARDLESS_SANDBOX_WEBHOOK_URL",
                                f"{settle}/webhooks/gocardless"),
            webhook_secret=_first("GOCARDLESS_WEBHOOK_SECRETS"))
        runners.append((gocardless.app(), port))
        print(f"GoCardless stand-in on {gocardless.base} (its payments, with buttons to move "
              f"them on, at {gocardless.base}/_sandbox)", flush=True)
    for app, port in runners:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()  # until the process is stopped


def main() -> None:
    logs.configure()
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
