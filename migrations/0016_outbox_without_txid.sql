-- Owed outbox rows are now noted as they are written (core.tx.owed), so nothing looks
-- them up by the transaction that wrote them: the column and its index only cost writes.
alter table outbox drop column txid;
