"""Email, the adapter to the mail server: messages rendered from templates, sent over SMTP.

Mails are owed as outbox rows by the ledger (`ledger.outbox`); `jobs.outbox`
renders and sends them through here.
"""
