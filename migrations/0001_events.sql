-- The inbox: every webhook event accepted from a processor, exactly once per
-- (processor, event id). The row exists before any job acts on it; the job
-- that applies it marks it in the same transaction as the money it moves.
create table events (
    id           bigint generated always as identity primary key,
    processor    text        not null default 'stripe',
    event_id     text        not null check (length(event_id) between 1 and 255),
    type         text        not null check (length(type) between 1 and 255),
    payload      jsonb       not null,
    status       text        not null default 'pending'
                 check (status in ('pending', 'processed', 'ignored', 'failed')),
    reason       text,
    attempts     integer     not null default 0 check (attempts >= 0),
    received_at  timestamptz not null default now(),
    processed_at timestamptz,
    constraint events_processor_event_id_key unique (processor, event_id),
    check ((status = 'pending') = (processed_at is null))
);

-- The sweeper looks for old pending events; operators list by status, newest first.
create index events_pending_received_idx on events (received_at) where status = 'pending';
create index events_status_received_idx on events (status, received_at desc, id desc);
