-- Reversals (CONTRACT §4): a chargeback or a late failure, the bank taking a payment's
-- money back. Each is a row, applied once and undone once, in whatever order the
-- processor's news of it arrives.
create table reversals (
    -- The processor's id for it (a Stripe dispute), unique per payment's processor.
    id           text primary key check (length(id) between 1 and 255),
    payment_id   text not null references payments (id),
    invoice_id   text not null references invoices (id),
    amount       bigint not null check (amount > 0),
    -- What the processor has said: the money was taken, and (later, or first) given back.
    taken        boolean not null default false,
    given_back   boolean not null default false,
    -- What the books did: nothing yet, the reversal applied, or applied and undone.
    booked       text not null default 'no' check (booked in ('no', 'reversed', 'undone')),
    -- How the reversal was taken (by the refund rule): from the payment's credit still on
    -- the balance, from the invoice, and what could not be taken (credit already spent).
    from_credit  bigint not null default 0 check (from_credit >= 0),
    from_paid    bigint not null default 0 check (from_paid >= 0),
    unrecovered  bigint not null default 0 check (unrecovered >= 0),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    check (from_credit + from_paid + unrecovered in (0, amount))
);
create index reversals_payment_idx on reversals (payment_id);

-- What reversals hold of each payment now (reversals applied and not undone).
alter table payments add column reversed bigint not null default 0 check (reversed >= 0);
alter table payments add column reversal_from_credit bigint not null default 0
    check (reversal_from_credit >= 0);
alter table payments add column reversal_from_paid bigint not null default 0
    check (reversal_from_paid >= 0);
alter table payments add constraint payments_taken_from_credit_check
    check (refund_from_credit + reversal_from_credit <= credited);
alter table payments add constraint payments_taken_from_paid_check
    check (refund_from_paid + reversal_from_paid <= applied);
