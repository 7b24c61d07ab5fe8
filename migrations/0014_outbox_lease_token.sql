-- Claim, perform, record: each claim of an outbox row gets a token of its own. A
-- worker hands a row back (deferred, busy) or gives it up (failed) only with the token
-- of the claim it holds, so a worker whose lease expired, the row since claimed by
-- another, cannot release the other's lease, give back its attempt or fail its row.
alter table outbox add column lease_token uuid;
