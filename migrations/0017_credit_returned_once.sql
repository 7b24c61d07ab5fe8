-- No credit is returned twice (CONTRACT §4). A credit note's post-payment part that goes to
-- the customer's balance is taken first from the credit applied to its invoice; voiding
-- gives back the applied credit less what its credit notes already returned from it.

-- What this credit note returned to the balance out of the credit applied to its invoice.
alter table credit_notes add column from_credit bigint not null default 0
    check (from_credit >= 0);
alter table credit_notes add constraint credit_notes_from_credit_within_check
    check (from_credit <= credited_amount);

-- Credit notes issued before: their credited part (the credit_note entry each wrote) was
-- taken from the invoice's applied credit first, in the order they were issued, never
-- more than that credit in all. Void invoices already gave theirs back.
update credit_notes n set from_credit = s.part
  from (select c.id,
               least(sum(coalesce(e.amount, 0)) over w, i.amount_credited)
               - least(sum(coalesce(e.amount, 0)) over w - coalesce(e.amount, 0),
                       i.amount_credited) as part
          from credit_notes c
          join invoices i on i.id = c.invoice_id
          left join credit_entries e on e.credit_note_id = c.id and e.kind = 'credit_note'
         where i.voided_at is null
        window w as (partition by c.invoice_id order by c.created_at, c.id)) s
 where s.id = n.id and s.part > 0;

-- A refund's `refund_issued` mail goes once it has succeeded, never while it is pending.
-- Refunds counted before this migration had theirs owed when they were counted.
alter table refunds add column mailed_at timestamptz;
update refunds set mailed_at = updated_at where booked = 'counted' and purpose <> 'external';
