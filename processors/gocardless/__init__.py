"""GoCardless (Direct Debit): webhook signatures (`signature`), batches of thin events into
payment facts (`events`), and the API calls settle makes (`client`)."""
