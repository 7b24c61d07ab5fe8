-- Refunds one by one, overpayment refunds counted only once confirmed, and what the
-- merchant does around an invoice: manual payments, refunds, credit notes, adjustments.

-- Every refund of a payment, by settle's id (the merchant's id, or one settle made),
-- or by the processor's id for a refund settle did not ask for. The books count a
-- refund while the processor says it is pending or succeeded, and undo it once if it
-- fails or is canceled, in whatever order the reports arrive.
create table refunds (
    id                  text primary key check (length(id) between 1 and 255),
    processor_refund_id text unique,
    payment_id          text not null references payments (id),
    invoice_id          text not null references invoices (id),
    amount              bigint not null check (amount > 0),
    purpose             text not null
                        check (purpose in ('external', 'merchant', 'excess', 'credit_note')),
    status              text not null
                        check (status in ('requested', 'requires_action', 'pending',
                                          'succeeded', 'failed', 'canceled')),
    -- What the books did with it: nothing yet, counted it, or its failure.
    booked              text not null default 'no' check (booked in ('no', 'counted', 'failed')),
    credit_note_id      text,
    reason              text,
    -- The body of the merchant's POST, to answer a repeat with the same body (200)
    -- and another body under the same id with 409 id_conflict.
    request             jsonb,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now()
);
create index refunds_payment_idx on refunds (payment_id);

-- The largest cumulative amount_refunded the processor reported (never lowered);
-- `refunded` is now what settle's refund totals say went back.
alter table payments add column reported_refunded bigint not null default 0
    check (reported_refunded >= 0);
update payments set reported_refunded = refunded;
-- An overpayment refund asked for and not yet confirmed (OVERPAYMENT_POLICY=refund).
alter table payments add column excess_pending bigint not null default 0
    check (excess_pending >= 0);
alter table payments drop constraint payments_check;
alter table payments drop constraint payments_check1;
alter table payments add constraint payments_split_check check (
    status <> 'succeeded' or applied + credited + excess_refunded + excess_pending = amount);
alter table payments add constraint payments_unapplied_check check (
    status = 'succeeded'
    or (applied = 0 and credited = 0 and excess_refunded = 0 and excess_pending = 0));

-- Payments made outside the processor ("Add Payment"), and how each was made.
alter table payments add column source text not null default 'stripe';
update payments set source = processor;
alter table payments add column method text;
alter table payments add column reference text;
alter table payments add column received_at timestamptz;
alter table payments add column request jsonb;

-- Credit notes: what they took off what is owed (pre-payment) and what they gave
-- back (post-payment: credited, or refunded through the processor).
alter table invoices add column amount_credit_noted bigint not null default 0
    check (amount_credit_noted >= 0);
alter table invoices drop constraint invoices_check;
alter table invoices add constraint invoices_settled_check
    check (amount_paid + amount_credited + amount_credit_noted <= total);
create table credit_notes (
    id                  text primary key check (length(id) between 1 and 255),
    invoice_id          text not null references invoices (id),
    amount              bigint not null check (amount > 0),
    pre_payment_amount  bigint not null check (pre_payment_amount >= 0),
    post_payment_amount bigint not null check (post_payment_amount >= 0),
    credited_amount     bigint not null default 0 check (credited_amount >= 0),
    refunded_amount     bigint not null default 0 check (refunded_amount >= 0),
    refund              boolean not null default false,
    reason              text,
    request             jsonb not null,
    created_at          timestamptz not null default now(),
    check (pre_payment_amount + post_payment_amount = amount),
    check (credited_amount + refunded_amount <= post_payment_amount)
);
create index credit_notes_invoice_idx on credit_notes (invoice_id, created_at);

-- The credit ledger in the contract's words, each entry with the balance after it.
alter table credit_entries drop constraint credit_entries_kind_check;
alter table credit_entries drop constraint credit_entries_check;
update credit_entries set kind = 'taken_back' where kind = 'refund_takeback';
update credit_entries set kind = 'applied' where kind = 'returned';
alter table credit_entries add constraint credit_entries_kind_check check (
    kind in ('overpayment', 'applied', 'taken_back', 'adjustment', 'credit_note',
             'refund_fallback'));
alter table credit_entries add constraint credit_entries_sign_check check (
    (kind in ('overpayment', 'credit_note', 'refund_fallback') and amount > 0)
    or (kind = 'taken_back' and amount < 0)
    or kind in ('applied', 'adjustment'));
-- A merchant's adjustment carries the caller's id, a reason and its request body.
alter table credit_entries add column ref text unique;
alter table credit_entries add column reason text;
alter table credit_entries add column request jsonb;
alter table credit_entries add column credit_note_id text references credit_notes (id);
alter table credit_entries add column balance_after bigint;
update credit_entries e set balance_after = s.after
  from (select id, sum(amount) over (partition by customer_id, currency order by id) as after
          from credit_entries) s
 where s.id = e.id;
alter table credit_entries alter column balance_after set not null;
alter table credit_entries add constraint credit_entries_balance_check check (balance_after >= 0);
create index credit_entries_list_idx on credit_entries (customer_id, id desc);

-- Invoices listed by status and customer, newest first.
create index invoices_list_idx on invoices (created_at desc, id desc);
create index invoices_customer_list_idx on invoices (customer_id, created_at desc, id desc);

-- Reconcile asks the processor about every session it has not seen settled.
alter table checkout_sessions add column payment_id text;
alter table checkout_sessions add column resolved_at timestamptz;
create index checkout_sessions_unresolved_idx on checkout_sessions (invoice_id)
    where resolved_at is null;
