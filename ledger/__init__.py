"""The record of truth: events, and (next) invoices, payments and credit.

Nothing here knows HTTP or arq: functions take a connection or a pool and
plain values, so the same rules serve webhooks, jobs and the command line.
"""
