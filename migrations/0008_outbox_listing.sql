-- Operators list owed side effects (GET /v1/ops/outbox, `settle outbox`) by status and
-- kind, newest first, each with the invoice it is about, and retry the failed ones.

-- The invoice a side effect is about, written with the row (ledger.outbox.owe).
alter table outbox add column invoice_id text;
update outbox set invoice_id = payload ->> 'invoice_id'
 where invoice_id is null and payload ? 'invoice_id';
update outbox o set invoice_id = s.invoice_id
  from checkout_sessions s
 where o.invoice_id is null and o.kind = 'expire_checkout' and s.id = o.payload ->> 'session_id';
update outbox o set invoice_id = p.invoice_id
  from payments p
 where o.invoice_id is null and o.kind = 'refund' and p.id = o.payload ->> 'payment_id';

-- When an operator last retried a failed row: its time to give up counts from here.
alter table outbox add column retried_at timestamptz;

-- The listing's keyset order, unfiltered and by status.
create index outbox_listing_idx on outbox (created_at desc, id desc);
create index outbox_status_listing_idx on outbox (status, created_at desc, id desc);
