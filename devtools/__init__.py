"""Development tools, never imported by the shipped service: private PostgreSQL and
Redis for `make`, `make run`'s runner, the demo and the mail catcher."""
