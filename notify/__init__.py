"""What settle sends out: mail (rendered from templates, sent over SMTP) and outbound
webhook messages (signed, sent over HTTPS behind the address guard).

Both are owed as outbox rows by the books (`delivery.outbox`, `delivery.outbound`);
`jobs.outbox` performs them through here. `addresses` is the one rule of which
addresses a webhook may reach, asked when an endpoint is stored and at every attempt.
"""
