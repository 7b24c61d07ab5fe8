-- The processor seam: the ledger names what is done, not who does it, and reads no
-- processor payload.

-- The invoice an event is about, read by the processor's package at intake, so the
-- timeline needs no processor-shaped JSON path.
alter table events add column invoice_id text;
update events set invoice_id = payload -> 'data' -> 'object' -> 'metadata' ->> 'invoice_id'
 where processor = 'stripe';
drop index events_invoice_idx;
create index events_invoice_idx on events (invoice_id) where invoice_id is not null;

-- Which processor holds a payment or a checkout session.
alter table payments add column processor text not null default 'stripe';
alter table checkout_sessions add column processor text not null default 'stripe';

-- Outbox kinds name the effect.
update outbox set kind = 'refund',
       payload = jsonb_build_object('processor', 'stripe',
                                    'payment_id', payload ->> 'payment_intent',
                                    'amount', (payload ->> 'amount')::bigint,
                                    'reason', payload ->> 'reason')
 where kind = 'stripe_refund';
update outbox set kind = 'expire_checkout',
       payload = payload || jsonb_build_object('processor', 'stripe')
 where kind = 'stripe_expire_session';
