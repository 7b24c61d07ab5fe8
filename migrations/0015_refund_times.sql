-- Refund reports in the processor's own time (CONTRACT §3): Stripe's amount_refunded goes
-- down when a refund fails, so the books keep the newest report, not the largest, and
-- tell which known refunds it can hold by when each was made and reported failed.

-- When the kept cumulative report (reported_refunded) was made, on the processor's clock;
-- null for reports kept before this migration (they were the largest seen).
alter table payments add column reported_at timestamptz;
-- When the processor made the refund, and the earliest report that it failed or was
-- canceled (the processor's clock), when known.
alter table refunds add column made_at timestamptz;
alter table refunds add column failed_at timestamptz;
