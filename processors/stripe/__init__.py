"""Stripe: webhook signatures (`signature`), events into payment facts (`events`), and
the API calls settle makes (`client`)."""
