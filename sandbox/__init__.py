"""An offline stand-in for Stripe: the test suite's, and `make run`'s without an API key."""
