"""Serve the sandbox processor: `python -m sandbox` (make run does, without STRIPE_API_KEY).

SANDBOX_PORT (12111) is where it listens; the events a payment produces are
signed with the first STRIPE_WEBHOOK_SECRETS secret and posted to
SANDBOX_WEBHOOK_URL (settle's own `/webhooks/stripe` on $PORT by default).
"""

from __future__ import annotations

import os

from aiohttp import web

from sandbox.stripe import StripeStandIn
from core import logs


def main() -> None:
    logs.configure()
    port = int(os.environ.get("SANDBOX_PORT", "12111"))
    secrets = [s for s in os.environ.get("STRIPE_WEBHOOK_SECRETS", "").split(",") if s.strip()]
    stand_in = StripeStandIn(
        api_key=os.environ.get("STRIPE_API_KEY", "sk_test_sandbox"),
        base=os.environ.get("SANDBOX_PUBLIC_URL", f"http://localhost:{port}"),
        webhook_url=os.environ.get(
            "SANDBOX_WEBHOOK_URL",
            f"http://127.0.0.1:{os.environ.get('PORT', '8080')}/webhooks/stripe"),
        webhook_secret=secrets[0].strip() if secrets else "",
    )
    print(f"sandbox processor on {stand_in.base} (checkout pages at {stand_in.base}/checkout/...)",
          flush=True)
    web.run_app(stand_in.app(), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
