-- The books speak settle's words; each processor translates its own (issue 23).

-- A refund's status in settle's words: requested (asked, no answer yet), pending (the
-- processor has it), succeeded, failed. Stripe's requires_action is pending (still
-- Stripe's to finish) and its canceled is failed (the refund did not happen): the books
-- already counted and undid them so.
update refunds set status = 'pending' where status = 'requires_action';
update refunds set status = 'failed' where status = 'canceled';
alter table refunds drop constraint refunds_status_check;
alter table refunds add constraint refunds_status_check
    check (status in ('requested', 'pending', 'succeeded', 'failed'));

-- No column default names a processor: every row says whose it is.
alter table events alter column processor drop default;
alter table payments alter column processor drop default;
alter table payments alter column source drop default;
alter table checkout_sessions alter column processor drop default;
