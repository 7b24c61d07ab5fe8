-- Outbound webhooks (CONTRACT §9): the application's endpoints, and the sequence of the
-- messages about each invoice (or customer). Each message is an outbox row of kind
-- 'webhook' (one per endpoint and event), performed like a mail.
create table webhook_endpoints (
    id                 text primary key check (length(id) between 1 and 255),
    url                text not null,
    -- null: every type
    events             text[],
    description        text,
    disabled           boolean not null default false,
    secret             text not null,
    -- The secret before the last rotation, which still signs until previous_until.
    previous_secret    text,
    previous_until     timestamptz,
    disabled_reason    text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now()
);

-- One counter per invoice ('invoice:ID') or customer ('customer:ID').
create table webhook_sequences (
    subject text primary key,
    last    bigint not null default 0
);

-- The message log of an endpoint, newest first, and what the last attempt answered.
alter table outbox add column endpoint_id text;
alter table outbox add column last_status_code integer;
create index outbox_endpoint_idx on outbox (endpoint_id, created_at desc, id desc)
    where endpoint_id is not null;

-- invoice.overdue is owed once per invoice (by the reminder scan), when it passes its
-- due date while open: the due date it was owed for.
alter table invoices add column overdue_owed_for date;
