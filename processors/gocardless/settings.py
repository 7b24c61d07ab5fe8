"""GoCardless's own settings (CONTRACT §2), read by the wiring with every other processor's.

`GoCardlessSettings.from_env` raises `core.settings.SettingsError` naming the variable,
so a bad GOCARDLESS_* value stops a process at start like any other bad setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.settings import Settings, SettingsError, checked_url, comma_list

# The name this package is registered under (worker.services.PROCESSORS).
NAME = "gocardless"
# GoCardless's live API (its sandbox is https://api-sandbox.gocardless.com).
LIVE_API = "https://api.gocardless.com"


@dataclass(frozen=True, slots=True)
class GoCardlessSettings:
    # Without a token settle takes no payments through GoCardless (its webhooks are still
    # heard, and refused while no secret is set).
    access_token: str | None = None
    # Where the API is: GoCardless's live API unless a sandbox or a stand-in is named.
    api_base: str = LIVE_API
    # Every secret a delivery's signature may be made with (several while rotating).
    webhook_secrets: tuple[str, ...] = ()

    @property
    def configured(self) -> bool:
        return bool(self.access_token)

    @property
    def configured_by(self) -> str:
        return "GOCARDLESS_ACCESS_TOKEN"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GoCardlessSettings:
        def get(name: str) -> str | None:
            return env.get(name, "").strip() or None

        token = get("GOCARDLESS_ACCESS_TOKEN")
        if token is not None and (not token.isascii() or not token.isprintable()
                                  or any(c.isspace() for c in token)):
            # It goes into an Authorization header; never echo it.
            raise SettingsError("GOCARDLESS_ACCESS_TOKEN holds spaces or characters a "
                                "token never has")
        base = get("GOCARDLESS_API_BASE")
        return cls(access_token=token,
                   api_base=checked_url(base, "GOCARDLESS_API_BASE", ("http", "https"))
                   .rstrip("/") if base else LIVE_API,
                   webhook_secrets=comma_list(get("GOCARDLESS_WEBHOOK_SECRETS")))


def gocardless_settings(settings: Settings) -> GoCardlessSettings:
    """GoCardless's part of `settings`; none (nothing configured) when the wiring put none."""
    own = settings.processors.get(NAME)
    return own if isinstance(own, GoCardlessSettings) else GoCardlessSettings()
