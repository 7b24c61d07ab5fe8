"""`make run`: migrate, say where everything is, then run every process in the foreground.

Without STRIPE_API_KEY the sandbox processor stands in for Stripe, and without
GOCARDLESS_ACCESS_TOKEN the GoCardless stand-in for GoCardless, so the whole story can
be tried with no account at either. Everything listens on 127.0.0.1 (the
API token is the well-known dev-token) unless HOST says otherwise. Ctrl-C, or
anything else that ends the run, stops every process (`devtools.foreground`).
"""

from __future__ import annotations

import os
import subprocess
import sys

from devtools.foreground import supervise


def main() -> None:
    env = dict(os.environ)
    port = env.setdefault("PORT", "8080")
    # Loopback unless told: `settle web` alone listens on every interface, as a
    # platform needs, but here anyone who can reach the port would know the token.
    host = env.setdefault("HOST", "127.0.0.1")
    # honcho gives each process its own PORT (web gets this one, the others +100,
    # +200...), so every address derived from it is fixed here, once.
    env.setdefault("PUBLIC_URL", f"http://localhost:{port}")
    token = (env.get("API_TOKENS") or "dev-token").split(",")[0].strip()
    env.setdefault("API_TOKENS", token)
    secret = (env.get("STRIPE_WEBHOOK_SECRETS") or "whsec_dev").split(",")[0].strip()
    env.setdefault("STRIPE_WEBHOOK_SECRETS", secret)
    # The local webhook receiver registers itself as an endpoint on loopback: allowed here.
    env.setdefault("OUTBOUND_ALLOW_PRIVATE", "true")
    env.setdefault("SETTLE_API_URL", f"http://127.0.0.1:{port}")
    receiver_port = env.setdefault("RECEIVER_PORT", "12112")
    processes = ["web", "worker", "mail", "receiver"]
    if env.get("STRIPE_API_KEY"):
        processor = (f"Stripe, with your key. Forward its webhooks here with:\n"
                     f"               stripe listen --forward-to localhost:{port}/webhooks/stripe\n"
                     f"             and put the whsec_... it prints in STRIPE_WEBHOOK_SECRETS")
    else:
        sandbox_port = env.setdefault("SANDBOX_PORT", "12111")
        env["STRIPE_API_KEY"] = "sk_test_sandbox"
        env["STRIPE_API_BASE"] = f"http://127.0.0.1:{sandbox_port}"
        # Its checkout pages at the same origin as its API: the invoice page's
        # Content-Security-Policy lets the pay forms lead there, and nowhere else.
        env["SANDBOX_PUBLIC_URL"] = env["STRIPE_API_BASE"]
        env.setdefault("SANDBOX_WEBHOOK_URL", f"http://127.0.0.1:{port}/webhooks/stripe")
        processes.append("sandbox")
        processor = (f"the offline sandbox at {env['STRIPE_API_BASE']} "
                     "(no Stripe account needed)")
    gc_secret = (env.get("GOCARDLESS_WEBHOOK_SECRETS") or "gc_whsec_dev").split(",")[0].strip()
    env.setdefault("GOCARDLESS_WEBHOOK_SECRETS", gc_secret)
    if env.get("GOCARDLESS_ACCESS_TOKEN"):
        direct_debit = (f"GoCardless, with your token; point its webhook at "
                        f"{env['PUBLIC_URL']}/webhooks/gocardless (secret GOCARDLESS_WEBHOOK_SECRETS)")
    else:
        gc_port = env.setdefault("GOCARDLESS_SANDBOX_PORT", "12113")
        env["GOCARDLESS_ACCESS_TOKEN"] = "gc_sandbox_token"
        env["GOCARDLESS_API_BASE"] = f"http://127.0.0.1:{gc_port}"
        # Its Direct Debit pages at the same origin as its API, as for Stripe's sandbox.
        env["GOCARDLESS_SANDBOX_PUBLIC_URL"] = env["GOCARDLESS_API_BASE"]
        env.setdefault("GOCARDLESS_SANDBOX_WEBHOOK_URL",
                       f"http://127.0.0.1:{port}/webhooks/gocardless")
        if "sandbox" not in processes:
            env["STRIPE_SANDBOX"] = "false"  # Stripe is the real one: GoCardless's stand-in only
            processes.append("sandbox")
        direct_debit = (f"the offline GoCardless stand-in at {env['GOCARDLESS_API_BASE']}; "
                        f"move its payments on at {env['GOCARDLESS_API_BASE']}/_sandbox")

    if subprocess.run(["settle", "migrate"], env=env).returncode:
        sys.exit(1)
    print(merchant_hint(env) + f"""
settle is starting:
  listening on {host} (set HOST=0.0.0.0 to be reached from other machines)
  API          http://localhost:{port}/v1   (Authorization: Bearer {token})
  webhooks     http://localhost:{port}/webhooks/stripe   (secret {secret})
               http://localhost:{port}/webhooks/gocardless   (secret {gc_secret})
  health       http://localhost:{port}/readyz   metrics http://localhost:{port}/metrics
  processor    {processor}
  Direct Debit {direct_debit}
  mail         caught on 127.0.0.1:{env.get('SMTP_PORT', '1025')} and printed below
  webhooks out received on http://127.0.0.1:{receiver_port}/webhooks (endpoint dev-receiver),
               verified with standardwebhooks and printed below

Try the whole story: in another terminal, run

  .venv/bin/settle-demo

and open the invoice page it prints, as the customer would.
""", flush=True)
    sys.exit(supervise(["honcho", "start", "-f", "Procfile.dev", *processes], env))


def merchant_hint(env: dict[str, str]) -> str:
    """While MERCHANT_NAME is unset, pages, mails and PDFs name the business "settle":
    say so first, and how to name it."""
    if (env.get("MERCHANT_NAME") or "").strip():
        return ""
    return ("""
Your customers see "settle" as the business: set MERCHANT_NAME (and MERCHANT_DETAILS,
lines such as the address and tax number, separated by \\n), e.g.
  MERCHANT_NAME="Acme Ltd" MERCHANT_DETAILS='1 High Street, London\\nVAT GB123456789' make run
""")


if __name__ == "__main__":
    main()
