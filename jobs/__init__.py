"""arq jobs: they receive ids, never payloads, and are safe to run twice."""
