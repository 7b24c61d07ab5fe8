"""Stripe's own settings (CONTRACT §2), read by the wiring with every other processor's.

`StripeSettings.from_env` raises `core.settings.SettingsError` naming the variable,
so a bad STRIPE_* value stops a process at start like any other bad setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.settings import Settings, checked_url, comma_list

# The name this package is registered under (worker.services.PROCESSORS).
NAME = "stripe"


@dataclass(frozen=True, slots=True)
class StripeSettings:
    # Without a key settle takes no payments through Stripe (its webhooks are still heard).
    api_key: str | None = None
    # Where the API is (a sandbox or a stand-in); Stripe's own hosts when unset.
    api_base: str | None = None
    # Every secret a delivery's signature may be made with (several while rotating).
    webhook_secrets: tuple[str, ...] = ()

    @property
    def configured(self) -> bool:
        return bool(self.api_key)

    @property
    def configured_by(self) -> str:
        return "STRIPE_API_KEY"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StripeSettings:
        def get(name: str) -> str | None:
            return env.get(name, "").strip() or None

        base = get("STRIPE_API_BASE")
        return cls(api_key=get("STRIPE_API_KEY"),
                   api_base=checked_url(base, "STRIPE_API_BASE", ("http", "https"))
                   if base else None,
                   webhook_secrets=comma_list(get("STRIPE_WEBHOOK_SECRETS")))


def stripe_settings(settings: Settings) -> StripeSettings:
    """Stripe's part of `settings`; none (nothing configured) when the wiring put none."""
    own = settings.processors.get(NAME)
    return own if isinstance(own, StripeSettings) else StripeSettings()
