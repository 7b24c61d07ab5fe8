"""Delivery: the side effects the books owe, and their way out.

Owing, in the books' transaction (`outbox`: a mail, a refund, a session's expiry;
`outbound`: a webhook message to every endpoint that wants it); performing,
with no transaction open (`outbox.claim` and `record_*`, under a lease); the
webhook endpoints and their message log (`endpoints`); what the sweeper finds
still owed (`sweep`) and the backlog operators list and retry (`backlog`).
It knows SQL, not the network: `jobs/` performs, `notify/` sends.
"""
