"""Read models: how settle shows what the books hold.

The API's shapes of an invoice, payment, request, credit note and customer
(`views`, `customers`; the webhook snapshots are the same), the customer's
pages (`pages`), an invoice's story for operators (`timeline`) and the lists'
cursors (`cursors`). Nothing here writes.
"""
