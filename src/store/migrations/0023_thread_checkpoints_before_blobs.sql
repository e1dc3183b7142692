-- 0023: a deleted thread's checkpoints go before their blobs, so that a checkpoint committed by
-- a run while the delete ran never leaves a blob behind.
-- 0017 deleted the blobs first. Each statement of the trigger reads a fresh snapshot, so a run's
-- checkpoint and blob committed between the two statements (the run is cancelled by the delete,
-- but its step in progress still saves) lost the checkpoint and kept the blob, which nothing
-- could reach or delete again. Now such a checkpoint is kept and its blob deleted, and the run's
-- end deletes the checkpoints it wrote after the delete (exec::Worker's finish), blobs with them.
CREATE OR REPLACE FUNCTION drop_thread_checkpoints() RETURNS trigger
  LANGUAGE plpgsql SET search_path = agentplane, pg_temp
AS $$
BEGIN
  DELETE FROM checkpoints WHERE tenant_id = OLD.tenant_id AND thread_id = OLD.thread_id::text;
  DELETE FROM checkpoint_blobs WHERE tenant_id = OLD.tenant_id AND thread_id = OLD.thread_id::text;
  RETURN NULL;
END $$;
