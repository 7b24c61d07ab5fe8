"""The books: the record of truth and the money rules.

Customers, invoices, payment requests, payments, refunds, reversals and credit;
the event inbox; checkout and reconcile. Nothing here knows HTTP, arq or any
processor's shapes, and speaks of payment facts (`ledger.facts`). A write takes
`core.tx.Books` and opens its transaction; a step of a caller's transaction takes
its `conn`. The ground every domain package stands on is here too: the money rules
(`money`), the facts (`facts`), what an invoice row says (`status`) and what a
transaction already read (`context`). What the books owe goes through `delivery/`;
how they are shown is `reads/`.
"""
