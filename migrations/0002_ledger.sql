-- The books: customers, invoices, processor payments, customer credit, and the
-- outbox of side effects owed after a commit. Money is bigint minor units with
-- a lowercase ISO 4217 currency; what must never be false is a CHECK.

create table customers (
    id         text primary key check (length(id) between 1 and 255),
    email      text not null,
    name       text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create table invoices (
    id                text primary key check (length(id) between 1 and 255),
    customer_id       text not null references customers (id),
    number            text not null,
    currency          text not null check (currency ~ '^[a-z]{3}$'),
    total             bigint not null check (total > 0),
    due_date          date,
    kind              text not null default 'invoice' check (kind in ('invoice', 'quote_deposit')),
    notify_emails     text[] not null default '{}',
    auto_apply_credit boolean not null default true,
    sent_at           timestamptz,
    voided_at         timestamptz,
    -- Kept sums, recomputable from payments and credit_entries (reconcile does).
    amount_paid       bigint not null default 0 check (amount_paid >= 0),
    amount_credited   bigint not null default 0 check (amount_credited >= 0),
    -- How many times it has become paid: the key of each "paid" notice.
    times_paid        integer not null default 0,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    check (amount_paid + amount_credited <= total)
);
create index invoices_customer_idx on invoices (customer_id);

-- One row per processor payment (the PaymentIntent id), whichever events told us.
create table payments (
    id                 text primary key,
    invoice_id         text not null references invoices (id),
    payment_request_id text,
    currency           text not null check (currency ~ '^[a-z]{3}$'),
    status             text not null check (status in ('processing', 'succeeded', 'failed')),
    amount             bigint not null default 0 check (amount >= 0),
    applied            bigint not null default 0 check (applied >= 0),
    credited           bigint not null default 0 check (credited >= 0),
    excess_refunded    bigint not null default 0 check (excess_refunded >= 0),
    -- Cumulative amount_refunded as the processor last reported it (never lowered).
    refunded           bigint not null default 0 check (refunded >= 0),
    refund_from_credit bigint not null default 0 check (refund_from_credit >= 0),
    refund_from_paid   bigint not null default 0 check (refund_from_paid >= 0),
    refund_unrecovered bigint not null default 0 check (refund_unrecovered >= 0),
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    check (status <> 'succeeded' or applied + credited + excess_refunded = amount),
    check (status = 'succeeded' or (applied = 0 and credited = 0 and excess_refunded = 0)),
    check (refund_from_credit <= credited),
    check (refund_from_paid <= applied),
    check (refunded <= amount or status <> 'succeeded')
);
create index payments_invoice_idx on payments (invoice_id);

-- Customer credit: an append-only ledger per currency and the balance it sums to.
create table credit_entries (
    id          bigint generated always as identity primary key,
    customer_id text not null references customers (id),
    currency    text not null check (currency ~ '^[a-z]{3}$'),
    amount      bigint not null check (amount <> 0),
    kind        text not null check (kind in ('overpayment', 'applied', 'refund_takeback', 'returned')),
    payment_id  text references payments (id),
    invoice_id  text references invoices (id),
    created_at  timestamptz not null default now(),
    check ((kind in ('overpayment', 'returned')) = (amount > 0))
);
create index credit_entries_customer_idx on credit_entries (customer_id, currency);
create unique index credit_entries_one_overpayment on credit_entries (payment_id)
    where kind = 'overpayment';

create table credit_balances (
    customer_id text not null references customers (id),
    currency    text not null check (currency ~ '^[a-z]{3}$'),
    balance     bigint not null default 0 check (balance >= 0),
    primary key (customer_id, currency)
);

-- Side effects owed after a commit (refunds, session expiry, email): written in
-- the transaction that decides them, performed by a job, keyed so that they
-- are owed once.
create table outbox (
    id         bigint generated always as identity primary key,
    kind       text not null,
    key        text not null unique,
    payload    jsonb not null,
    status     text not null default 'pending' check (status in ('pending', 'done', 'failed')),
    attempts   integer not null default 0,
    reason     text,
    result     jsonb,
    created_at timestamptz not null default now(),
    done_at    timestamptz
);
create index outbox_pending_idx on outbox (created_at) where status = 'pending';
