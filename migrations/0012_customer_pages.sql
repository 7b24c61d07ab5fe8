-- The customer's side (CONTRACT §6): an invoice page and a customer page reached by
-- unguessable tokens, the customer's locale, an invoice's lines, and partial payments
-- chosen by the customer.

-- gen_random_uuid() draws from a cryptographic source: two of them, 244 random bits,
-- unrelated to any id. A default, so every insert gets its own without asking.
alter table customers add column portal_token text unique
    default replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
update customers set portal_token = default where portal_token is null;
alter table customers alter column portal_token set not null;
-- A BCP 47 tag Babel knows (checked where it enters): how pages and mails format
-- amounts and dates for this customer.
alter table customers add column locale text not null default 'en'
    check (length(locale) between 2 and 35);

alter table invoices add column view_token text unique
    default replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
update invoices set view_token = default where view_token is null;
alter table invoices alter column view_token set not null;
-- [{description, amount}] as the caller gave them (adding up to total), or null.
alter table invoices add column lines jsonb
    check (lines is null or jsonb_typeof(lines) = 'array');
alter table invoices add column allow_partial boolean not null default false;
alter table invoices add column min_partial_amount bigint not null default 0
    check (min_partial_amount >= 0);
alter table invoices add constraint invoices_deposit_in_full_check
    check (not (allow_partial and kind = 'quote_deposit'));
-- When it last became paid: the customer page lists the last twelve months' paid ones.
alter table invoices add column paid_at timestamptz;
update invoices set paid_at = updated_at
 where times_paid > 0 and voided_at is null
   and total - amount_paid - amount_credited - amount_credit_noted <= 0;
create index invoices_customer_paid_idx on invoices (customer_id, paid_at desc)
    where paid_at is not null;

-- Who chose a session's amount: the link (a request's amount, or what remains), or the
-- customer on the invoice page ("Pay another amount"). A customer's session is reused
-- only for the same amount chosen again, never for a link.
alter table checkout_sessions add column amount_source text not null default 'link'
    check (amount_source in ('link', 'customer'));
