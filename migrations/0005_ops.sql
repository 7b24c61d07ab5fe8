-- Operator jobs (reconcile): their status and result live here, not in Redis,
-- so `GET /v1/ops/jobs/{id}` survives Redis losing its data.
create table ops_jobs (
    id          text primary key,
    kind        text not null check (kind in ('reconcile')),
    params      jsonb not null default '{}',
    status      text not null default 'queued'
                check (status in ('queued', 'in_progress', 'complete', 'failed')),
    -- Work so far: a reconcile over many invoices resumes from here.
    progress    jsonb not null default '{}',
    result      jsonb,
    reason      text,
    created_at  timestamptz not null default now(),
    started_at  timestamptz,
    finished_at timestamptz
);
create index ops_jobs_unfinished_idx on ops_jobs (created_at) where status in ('queued', 'in_progress');

-- An invoice's events, for its timeline.
create index events_invoice_idx on events ((payload -> 'data' -> 'object' -> 'metadata' ->> 'invoice_id'));
