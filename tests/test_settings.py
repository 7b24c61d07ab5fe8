"""Settings: the contract's defaults, and one clear line for each bad value."""

from __future__ import annotations

import subprocess

import pytest

from collections.abc import Mapping

from tests.conftest import ROOT, SETTLE
from core.settings import Settings, SettingsError
from processors.stripe.settings import StripeSettings, stripe_settings
from worker.services import with_processors


def read(env: Mapping[str, str]) -> Settings:
    """Settings as a process reads them: settle's own and each processor's."""
    return with_processors(Settings.from_env(env), env)


def test_defaults_match_the_contract() -> None:
    s = read({})
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/settle"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (s.queue_name, s.port, s.public_url) == ("settle", 8080, "http://localhost:8080")
    assert s.api_tokens == ()
    assert stripe_settings(s) == StripeSettings(api_key=None, api_base=None, webhook_secrets=())
    assert not stripe_settings(s).configured
    assert (s.webhook_tolerance_seconds, s.webhook_max_bytes) == (300, 1048576)
    assert (s.smtp_host, s.smtp_port, s.smtp_tls, s.mail_from) == (
        "localhost", 1025, "none", "billing@localhost")
    assert s.smtp_username is None and s.smtp_password is None
    assert s.reminder_schedule == (3 * 86400, 7 * 86400, 14 * 86400)
    assert (s.reminder_scan_seconds, s.inbox_sweep_seconds, s.inbox_sweep_after_seconds) == (
        60, 30, 60)
    assert s.overpayment_policy == "credit"


def test_values_are_read() -> None:
    s = read({
        "PORT": "9000", "API_TOKENS": " a, b ,,", "STRIPE_WEBHOOK_SECRETS": "whsec_1,whsec_2",
        "REMINDER_SCHEDULE": "30s,2m,1h,1d", "SMTP_TLS": "starttls", "OVERPAYMENT_POLICY": "refund",
        "STRIPE_API_BASE": "http://127.0.0.1:12111", "QUEUE_NAME": "eu",
    })
    assert s.port == 9000 and s.public_url == "http://localhost:9000"
    assert s.api_tokens == ("a", "b")
    assert stripe_settings(s).webhook_secrets == ("whsec_1", "whsec_2")
    assert stripe_settings(s).api_base == "http://127.0.0.1:12111"
    assert s.reminder_schedule == (30, 120, 3600, 86400)
    assert (s.smtp_tls, s.overpayment_policy, s.queue_name) == ("starttls", "refund", "eu")


@pytest.mark.parametrize("name,value", [
    ("DATABASE_URL", "mysql://root@localhost/settle"),
    ("DATABASE_URL", "not a url"),
    ("REDIS_URL", "http://127.0.0.1:6379"),
    ("PORT", "eighty"),
    ("PORT", "70000"),
    ("PUBLIC_URL", "localhost:8080"),
    ("STRIPE_API_BASE", "ftp://stripe"),
    ("WEBHOOK_TOLERANCE_SECONDS", "5m"),
    ("WEBHOOK_TOLERANCE_SECONDS", "-1"),
    ("WEBHOOK_MAX_BYTES", "1MB"),
    ("SMTP_PORT", "0"),
    ("SMTP_TLS", "yes"),
    ("MAIL_FROM", "billing"),
    ("REMINDER_SCHEDULE", "3 days"),
    ("REMINDER_SCHEDULE", "3d,,7d"),
    ("REMINDER_SCHEDULE", "0d"),
    ("REMINDER_SCAN_SECONDS", "0"),
    ("INBOX_SWEEP_SECONDS", "fast"),
    ("INBOX_SWEEP_AFTER_SECONDS", "-5"),
    ("OVERPAYMENT_POLICY", "keep"),
    ("WEB_PROCESSES", "0"),
    ("SHUTDOWN_GRACE_SECONDS", "-1"),
    ("SHUTDOWN_GRACE_SECONDS", "soon"),
    ("RETRY_BASE_SECONDS", "0"),
    ("RETRY_BASE_SECONDS", "-1"),
    ("RETRY_BASE_SECONDS", "nan"),
    ("RETRY_BASE_SECONDS", "1s"),
    ("RETRY_BASE_SECONDS", "301"),
    ("MERCHANT_DETAILS", "Acme\x07Ltd"),
    ("MERCHANT_DETAILS", "x" * 201),
    ("MERCHANT_DETAILS", "\\n".join("line"  for _ in range(9))),
])
def test_malformed_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        read({name: value})
    assert str(error.value).startswith(name)
    assert "\n" not in str(error.value)


def test_statement_cache_and_sentinel_settings() -> None:
    s = Settings.from_env({})
    assert s.database_statement_cache_size == 100  # asyncpg's own default
    assert s.shutdown_grace_seconds == 5
    assert s.redis_sentinels == () and s.redis_sentinel_master is None
    s = Settings.from_env({
        "DATABASE_STATEMENT_CACHE_SIZE": "0",
        "REDIS_SENTINELS": " sentinel-a:26379, 10.0.0.2:26380 ,[::1]:26381",
        "REDIS_SENTINEL_MASTER": "settle-primary",
    })
    assert s.database_statement_cache_size == 0
    assert s.redis_sentinels == (("sentinel-a", 26379), ("10.0.0.2", 26380), ("::1", 26381))
    assert s.redis_sentinel_master == "settle-primary"


@pytest.mark.parametrize("env,name", [
    ({"DATABASE_STATEMENT_CACHE_SIZE": "-1"}, "DATABASE_STATEMENT_CACHE_SIZE"),
    ({"DATABASE_STATEMENT_CACHE_SIZE": "off"}, "DATABASE_STATEMENT_CACHE_SIZE"),
    ({"REDIS_SENTINELS": "sentinel-a", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "sentinel-a:port", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a:26379,:26379", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a:70000", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a b:26379\n", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a:26379"}, "REDIS_SENTINEL_MASTER"),
    ({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
])
def test_malformed_failover_setting_names_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env(env)
    assert str(error.value).startswith(name)
    assert "\n" not in str(error.value)


def test_a_dsn_password_is_never_echoed() -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"DATABASE_URL": "mysql://u:hunter2@db/settle"})
    assert "hunter2" not in str(error.value)


@pytest.mark.parametrize("command", ["web", "worker", "migrate"])
def test_process_stops_at_start_with_one_line(command: str) -> None:
    done = subprocess.run([SETTLE, command], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env={"SMTP_TLS": "maybe"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "settle: SMTP_TLS='maybe' must be one of none, starttls, tls"]


@pytest.mark.parametrize("command", ["web", "worker", "migrate", "events"])
def test_a_bad_processor_setting_stops_a_process_at_start(command: str) -> None:
    """A processor's own settings are read where settle's are, before anything runs."""
    done = subprocess.run([SETTLE, command], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env={"STRIPE_API_BASE": "ftp://stripe"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "settle: STRIPE_API_BASE is not a http/https:// URL"]


def test_core_settings_hold_no_processor() -> None:
    """`Settings.from_env` reads only settle's own variables; each processor reads its."""
    assert Settings.from_env({"STRIPE_API_KEY": "sk_test_1"}).processors == {}
    assert stripe_settings(read({"STRIPE_API_KEY": "sk_test_1"})).configured


def test_outbound_webhook_settings() -> None:
    default = Settings.from_env({})
    assert default.outbound_allow_private is False
    assert default.webhook_retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
    custom = Settings.from_env({"OUTBOUND_ALLOW_PRIVATE": "true",
                                "WEBHOOK_RETRY_SCHEDULE": "1s,1s,2m"})
    assert custom.outbound_allow_private is True and custom.webhook_retry_schedule == (1, 1, 120)
    for name, value in (("OUTBOUND_ALLOW_PRIVATE", "perhaps"),
                        ("WEBHOOK_RETRY_SCHEDULE", "5s,soon")):
        with pytest.raises(SettingsError) as bad:
            Settings.from_env({name: value})
        assert str(bad.value).startswith(name)


def test_retry_delays_start_at_the_base_and_double_up_to_five_minutes() -> None:
    from core.retry import backoff

    assert Settings.from_env({}).retry_base_seconds == 1.0
    base = Settings.from_env({"RETRY_BASE_SECONDS": "0.05"}).retry_base_seconds
    assert base == 0.05
    assert [backoff(n, base=base) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]
    assert [backoff(n, base=1.0) for n in (1, 2, 3, 4, 20)] == [1, 2, 4, 8, 300]
    assert backoff(1, base=30.0) == 30.0


def test_web_listens_on_every_interface_unless_host_says_otherwise() -> None:
    assert Settings.from_env({}).host == "0.0.0.0"  # a platform routes to $PORT from outside
    assert Settings.from_env({"HOST": "127.0.0.1"}).host == "127.0.0.1"
    assert Settings.from_env({"HOST": "::"}).host == "::"
    for bad in ("127.0.0.1 8080", "http://x", "a@b"):
        with pytest.raises(SettingsError, match="^HOST="):
            Settings.from_env({"HOST": bad})


def test_merchant_details_are_lines_under_the_name() -> None:
    assert Settings.from_env({}).merchant_details == ()
    # The two characters backslash-n (as an env file holds them) and real newlines alike.
    typed = Settings.from_env({"MERCHANT_DETAILS": "Acme Ltd\\n 1 High Street \\nVAT GB123"})
    real = Settings.from_env({"MERCHANT_DETAILS": "Acme Ltd\n1 High Street\r\n\nVAT GB123"})
    assert typed.merchant_details == real.merchant_details == (
        "Acme Ltd", "1 High Street", "VAT GB123")
