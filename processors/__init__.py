"""Adapters to payment processors: one package each, implementing `core.processor.Processor`
and registering the handlers that turn its events into `ledger.facts`."""
