"""Email: owed as outbox rows with the change that owes them, rendered and sent by a job."""
