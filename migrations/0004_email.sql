-- How many times a request was mailed (created = 0, each resend + 1): the key of
-- each payment_request mail, so a resend is a new mail and a retry is not.
alter table payment_requests add column sends integer not null default 0 check (sends >= 0);
create index payment_requests_active_sent_idx on payment_requests (sent_at) where status = 'active';
