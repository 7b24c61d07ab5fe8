-- Payment requests ("pay 3,000 of this invoice now"), the invoice's own Pay Now
-- link, and the Stripe Checkout Sessions made for them.

create table payment_requests (
    id             text primary key,
    invoice_id     text not null references invoices (id),
    amount         bigint not null check (amount > 0),
    currency       text not null check (currency ~ '^[a-z]{3}$'),
    status         text not null default 'active'
                   check (status in ('active', 'paid', 'cancelled', 'superseded')),
    -- The secret of the pay link: random, never derived from an id.
    token          text not null unique,
    -- {to, cc, bcc} as the caller gave them.
    recipients     jsonb not null,
    note           text,
    reminders_sent integer not null default 0 check (reminders_sent >= 0),
    sent_at        timestamptz not null default now(),
    ended_at       timestamptz,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    check ((status = 'active') = (ended_at is null))
);
-- One active link per invoice: the database decides between two concurrent creations.
create unique index payment_requests_one_active on payment_requests (invoice_id)
    where status = 'active';
create index payment_requests_invoice_idx on payment_requests (invoice_id, created_at);

-- The Pay Now link of an invoice: pays whatever is outstanding when it is opened.
alter table invoices add column pay_token text unique;
-- gen_random_uuid() draws from a cryptographic source: two of them, 244 random bits.
update invoices
   set pay_token = replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')
 where pay_token is null;
alter table invoices alter column pay_token set not null;

create table checkout_sessions (
    id                 text primary key,
    invoice_id         text not null references invoices (id),
    payment_request_id text references payment_requests (id),
    amount             bigint not null check (amount > 0),
    currency           text not null,
    url                text not null,
    status             text not null default 'open' check (status in ('open', 'complete', 'expired')),
    expires_at         timestamptz,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now()
);
create index checkout_sessions_open_idx on checkout_sessions (invoice_id) where status = 'open';

-- Side effects are found again by the transaction that owed them (see ledger.tx).
alter table outbox add column txid bigint not null default txid_current();
create index outbox_txid_idx on outbox (txid);
