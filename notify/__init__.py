"""What settle sends out: mail (rendered from templates, sent over SMTP) and outbound
webhook messages (signed, sent over HTTPS behind the address guard).

Both are owed as outbox rows by the ledger (`ledger.outbox`, `ledger.outbound`);
`jobs.outbox` performs them through here.
"""
