-- Claim, perform, record: an outbox row is leased (committed) while its effect is
-- performed with no transaction open, then its outcome is recorded. A lease that
-- expires (a worker died mid-effect) lets another worker take the row again.
alter table outbox add column lease_until timestamptz;
-- When the next attempt is due (backoff after a failure); the sweeper respects it.
alter table outbox add column next_attempt_at timestamptz not null default now();
drop index outbox_pending_idx;
create index outbox_due_idx on outbox (next_attempt_at) where status = 'pending';
