"""What every layer shares: settings, errors, the processor seam, the database pool, the
queue, the after-commit transaction, metrics and logs. Imports nothing of settle's."""
