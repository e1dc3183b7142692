-- 0019: usage records arrive in batches of thousands per second (src/llm/usage.cc). The foreign
-- key to tenants checked every row on its own (a KEY SHARE lock on the tenant's row per record):
-- a third of PostgreSQL's cost per record. The writer now checks its tenant once per statement
-- instead, and drops the records of a deleted tenant (which the foreign key let through: a
-- deleted tenant keeps its row until it is purged). tenant_delete_data and the purge still
-- delete the table's rows by tenant_id.
ALTER TABLE usage_records DROP CONSTRAINT usage_records_tenant_id_fkey;
