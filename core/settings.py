"""Settings from the environment (CONTRACT §2), read once at process start.

`Settings.from_env` raises `SettingsError` naming the variable; entry points
turn that into one line on stderr and a non-zero exit, so a bad deployment
fails at start and never at the first request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/settle"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

SmtpTls = Literal["none", "starttls", "tls"]
OverpaymentPolicy = Literal["credit", "refund"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_OFFSET = re.compile(r"^(\d+)([smhd])$")
_PORT = re.compile(r"[0-9]{1,5}")
# The most lines MERCHANT_DETAILS may hold: an address and a tax number, not a letter.
MERCHANT_DETAIL_LINES = 8


class SettingsError(Exception):
    """A setting is malformed; the message starts with the variable's name."""


class ProcessorSettings(Protocol):
    """A processor's own settings, read by its package's `from_env` (the wiring calls
    each registered processor's and puts the result in `Settings.processors`)."""

    @property
    def configured(self) -> bool:
        """Whether settle may call the processor (take payments, refund)."""
        ...

    @property
    def configured_by(self) -> str:
        """The variable(s) that configure it, for a person to read (an error names them)."""
        ...


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # Not in the contract's table: asyncpg's cache of prepared statements per
    # connection; 0 turns it off, for pgbouncer in transaction pooling mode.
    database_statement_cache_size: int = 100
    redis_url: str = DEFAULT_REDIS_URL
    # Not in the contract's table: Redis Sentinel. When set, the sentinels say
    # where the master is, and REDIS_URL gives only the database, login and TLS.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str | None = None
    queue_name: str = "settle"
    port: int = 8080
    # Not in the contract's table: the address `settle web` listens on; every interface
    # by default, as a platform routing to $PORT needs (`make run` binds loopback).
    host: str = "0.0.0.0"
    public_url: str = "http://localhost:8080"
    api_tokens: tuple[str, ...] = ()
    # Each registered processor's own settings by name (its package reads them from the
    # environment: `worker.services.with_processors`); none here, so none is configured.
    processors: Mapping[str, ProcessorSettings] = field(default_factory=dict)
    webhook_tolerance_seconds: int = 300
    webhook_max_bytes: int = 1_048_576
    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_tls: SmtpTls = "none"
    mail_from: str = "billing@localhost"
    reminder_schedule: tuple[int, ...] = (3 * 86400, 7 * 86400, 14 * 86400)
    reminder_scan_seconds: int = 60
    inbox_sweep_seconds: int = 30
    inbox_sweep_after_seconds: int = 60
    overpayment_policy: OverpaymentPolicy = "credit"
    # The business's name on customer pages, PDFs and mails.
    merchant_name: str = "settle"
    # Lines shown under that name (address, tax number), in order.
    merchant_details: tuple[str, ...] = ()
    # Not in the contract's table: how long one job may run before arq gives up on
    # it. A killed worker's job is picked up again this long (+10 s) later.
    job_timeout_seconds: int = 20
    # Not in the contract's table: on SIGTERM, how long running jobs may finish before
    # they are cancelled and handed back; a worker is gone within this + 5 s.
    shutdown_grace_seconds: int = 5
    # Not in the contract's table: how often every open invoice is reconciled.
    reconcile_interval_seconds: int = 86400
    # Outbound webhook endpoints may be http and on loopback or private addresses
    # (development and tests only; CONTRACT §9).
    outbound_allow_private: bool = False
    # Not in the contract's table: the delays between attempts of an outbound webhook
    # message (CONTRACT §9's schedule by default), then it is failed. Tests shorten it.
    webhook_retry_schedule: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    # Not in the contract's table: how many `web` processes `settle web` runs on its one
    # port (SO_REUSEPORT; the kernel spreads connections), for machines with more cores.
    web_processes: int = 1
    # Not in the contract's table: the most deliveries the intake writes in one INSERT
    # (1: each alone, no group commit; the latency bench compares the two).
    intake_max_batch: int = 500
    # Not in the contract's table: how long a request body may take to arrive in full
    # before it is cut off with 408 (CONTRACT §11 says 10 s; tests shorten it).
    body_timeout_seconds: float = 10
    # Not in the contract's table: the bodies anyone may send (webhooks, page forms) read
    # at once per process; past it, 503 with Retry-After. 64 of WEBHOOK_MAX_BYTES (1 MiB)
    # bound that memory to 64 MiB, and a delivery is read in milliseconds, so 64 at once
    # is far past any real burst.
    body_reads_max: int = 64
    # The bearer token /metrics asks for; open to all when unset (CONTRACT §8).
    metrics_token: str | None = None
    # Not in the contract's table: the first retry delay of a failed event or side effect
    # (core.retry.backoff doubles it per attempt, up to 5 minutes). Tests shorten it.
    retry_base_seconds: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        port = _int(env, "PORT", 8080, low=1, high=65535)
        sentinels = _sentinels(get("REDIS_SENTINELS"))
        sentinel_master = get("REDIS_SENTINEL_MASTER")
        if sentinels and not sentinel_master:
            raise SettingsError("REDIS_SENTINEL_MASTER must name the master when REDIS_SENTINELS "
                                "is set")
        if sentinel_master and not sentinels:
            raise SettingsError("REDIS_SENTINELS must list the sentinels (host:port,...) when "
                                "REDIS_SENTINEL_MASTER is set")
        return cls(
            database_url=checked_url(get("DATABASE_URL") or DEFAULT_DATABASE_URL, "DATABASE_URL",
                              ("postgres", "postgresql")),
            database_statement_cache_size=_int(env, "DATABASE_STATEMENT_CACHE_SIZE", 100, low=0,
                                               high=100_000),
            redis_url=checked_url(get("REDIS_URL") or DEFAULT_REDIS_URL, "REDIS_URL",
                           ("redis", "rediss", "unix")),
            redis_sentinels=sentinels,
            redis_sentinel_master=sentinel_master,
            queue_name=get("QUEUE_NAME") or "settle",
            port=port,
            host=_host(get("HOST") or "0.0.0.0"),
            public_url=checked_url(get("PUBLIC_URL") or f"http://localhost:{port}", "PUBLIC_URL",
                            ("http", "https")).rstrip("/"),
            api_tokens=comma_list(get("API_TOKENS")),
            webhook_tolerance_seconds=_int(env, "WEBHOOK_TOLERANCE_SECONDS", 300, low=1),
            webhook_max_bytes=_int(env, "WEBHOOK_MAX_BYTES", 1_048_576, low=1),
            smtp_host=get("SMTP_HOST") or "localhost",
            smtp_port=_int(env, "SMTP_PORT", 1025, low=1, high=65535),
            smtp_username=get("SMTP_USERNAME"),
            smtp_password=get("SMTP_PASSWORD"),
            smtp_tls=_choice(env, "SMTP_TLS", ("none", "starttls", "tls")),  # type: ignore[arg-type]
            mail_from=_email(get("MAIL_FROM") or "billing@localhost", "MAIL_FROM"),
            reminder_schedule=_schedule(get("REMINDER_SCHEDULE") or "3d,7d,14d"),
            reminder_scan_seconds=_int(env, "REMINDER_SCAN_SECONDS", 60, low=1),
            inbox_sweep_seconds=_int(env, "INBOX_SWEEP_SECONDS", 30, low=1),
            inbox_sweep_after_seconds=_int(env, "INBOX_SWEEP_AFTER_SECONDS", 60, low=0),
            overpayment_policy=_choice(env, "OVERPAYMENT_POLICY", ("credit", "refund")),  # type: ignore[arg-type]
            merchant_name=_name(get("MERCHANT_NAME") or "settle", "MERCHANT_NAME"),
            merchant_details=_details(get("MERCHANT_DETAILS")),
            job_timeout_seconds=_int(env, "JOB_TIMEOUT_SECONDS", 20, low=1, high=300),
            shutdown_grace_seconds=_int(env, "SHUTDOWN_GRACE_SECONDS", 5, low=0, high=300),
            reconcile_interval_seconds=_int(env, "RECONCILE_INTERVAL_SECONDS", 86400, low=60),
            outbound_allow_private=_bool(env, "OUTBOUND_ALLOW_PRIVATE"),
            webhook_retry_schedule=_delays(get("WEBHOOK_RETRY_SCHEDULE")
                                           or "5s,5m,30m,2h,5h,10h,10h"),
            web_processes=_int(env, "WEB_PROCESSES", 1, low=1, high=64),
            intake_max_batch=_int(env, "INTAKE_MAX_BATCH", 500, low=1, high=5000),
            body_timeout_seconds=_int(env, "BODY_TIMEOUT_SECONDS", 10, low=1, high=300),
            body_reads_max=_int(env, "BODY_READS_MAX", 64, low=1, high=10_000),
            metrics_token=get("METRICS_TOKEN"),
            retry_base_seconds=_seconds(env, "RETRY_BASE_SECONDS", 1.0, high=300.0),
        )


def check_worker(settings: Settings) -> None:
    """What a worker needs beyond well-formed values (raises SettingsError)."""
    own = settings.processors.values()
    if settings.overpayment_policy == "refund" and not any(p.configured for p in own):
        needs = " or ".join(p.configured_by for p in own) or "a registered processor"
        raise SettingsError(f"OVERPAYMENT_POLICY=refund needs a configured processor ({needs}): "
                            "overpayments are refunded through the processor")


def _int(env: Mapping[str, str], name: str, default: int, *, low: int,
         high: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise SettingsError(f"{name}={raw!r} must be {bounds}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, *, high: float) -> float:
    """A positive number of seconds, fractions allowed (0.05)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
    if not 0 < value <= high:  # also refuses nan and inf
        raise SettingsError(f"{name}={raw!r} must be more than 0 and at most {high:g}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower() or "false"
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise SettingsError(f"{name}={raw!r} must be true or false")
    return raw in ("true", "1", "yes")


def checked_url(raw: str | None, name: str, schemes: tuple[str, ...]) -> str:
    """`raw` when it is a URL of one of `schemes` (for processors' settings too)."""
    assert raw is not None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "unix"):
        # Never echo the value: a DSN may carry a password.
        raise SettingsError(f"{name} is not a {'/'.join(schemes)}:// URL")
    return raw


def comma_list(raw: str | None) -> tuple[str, ...]:
    """`a, b,,c` as ('a', 'b', 'c') (for processors' settings too)."""
    return tuple(item.strip() for item in (raw or "").split(",") if item.strip())


def _sentinels(raw: str | None) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` (an IPv6 host in brackets: `[::1]:26379`)."""
    found = []
    for item in comma_list(raw):
        host, _, port = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not host or not _PORT.fullmatch(port) or not 0 < int(port) < 65536 \
                or any(c.isspace() or c in "/@[]" for c in host):
            raise SettingsError(f"REDIS_SENTINELS={raw!r} must be host:port pairs separated by "
                                "commas")
        found.append((host, int(port)))
    return tuple(found)


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or choices[0]
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return raw


def _email(raw: str, name: str) -> str:
    if "@" not in raw or any(c in raw for c in "\r\n"):
        raise SettingsError(f"{name}={raw!r} is not an email address")
    return raw


def _delays(raw: str) -> tuple[int, ...]:
    """Delays in order, repeats kept: `5s,5m,30m,2h`."""
    delays: list[int] = []
    for item in raw.split(","):
        match = _OFFSET.match(item.strip())
        if not match or int(match.group(1)) == 0 or len(delays) >= 50:
            raise SettingsError(f"WEBHOOK_RETRY_SCHEDULE={raw!r} must be delays like "
                                "5s,5m,30m,2h (units s, m, h, d)")
        delays.append(int(match.group(1)) * _UNITS[match.group(2)])
    return tuple(delays)


def _host(raw: str) -> str:
    if len(raw) > 253 or any(c.isspace() or c in "/@" for c in raw) or not raw.isprintable():
        raise SettingsError(f"HOST={raw!r} must be an address or a name to listen on "
                            "(0.0.0.0, 127.0.0.1, ::)")
    return raw


def _name(raw: str, name: str) -> str:
    """A name people read: printable, one line, not endless."""
    if len(raw) > 200 or not raw.isprintable():
        raise SettingsError(f"{name} must be one printable line of at most 200 characters")
    return raw


def _details(raw: str | None) -> tuple[str, ...]:
    """Lines under the merchant's name: an environment value rarely holds a real line
    break, so the two characters `\\n` separate lines as well."""
    if raw is None:
        return ()
    lines = [line.strip() for line in raw.replace("\\n", "\n").splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > MERCHANT_DETAIL_LINES or any(
            len(line) > 200 or not line.isprintable() for line in lines):
        raise SettingsError(f"MERCHANT_DETAILS must be at most {MERCHANT_DETAIL_LINES} printable "
                            "lines of at most 200 characters, separated by \\n")
    return tuple(lines)


def _schedule(raw: str) -> tuple[int, ...]:
    offsets = []
    for item in raw.split(","):
        match = _OFFSET.match(item.strip())
        if not match or int(match.group(1)) == 0:
            raise SettingsError(
                f"REMINDER_SCHEDULE={raw!r} must be offsets like 3d,7d,14d (units s, m, h, d)"
            )
        offsets.append(int(match.group(1)) * _UNITS[match.group(2)])
    return tuple(sorted(set(offsets)))
