"""The domain: the record of truth and the money rules.

Customers, invoices, payment requests, payments, refunds and credit; the
event inbox; what operators ask of the record. Nothing here knows HTTP, arq
or any processor's shapes: functions take a connection (or `core.tx.Books`)
and plain values, and speak of payment facts (`ledger.facts`).
"""
