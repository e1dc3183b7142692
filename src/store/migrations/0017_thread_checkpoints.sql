-- 0017: a thread's checkpoints are deleted with it, in the same transaction, whatever deletes
-- it (the API, a temporary thread's end, the sweeper, tenant deletion). A temporary thread's
-- end had to delete them in a transaction (and a WAL flush) of its own after every stateless run.
-- Runs as its caller, under the caller's row-level security (the rows are the thread's tenant's).
CREATE FUNCTION drop_thread_checkpoints() RETURNS trigger
  LANGUAGE plpgsql SET search_path = agentplane, pg_temp
AS $$
BEGIN
  DELETE FROM checkpoint_blobs WHERE tenant_id = OLD.tenant_id AND thread_id = OLD.thread_id::text;
  DELETE FROM checkpoints WHERE tenant_id = OLD.tenant_id AND thread_id = OLD.thread_id::text;
  RETURN NULL;
END $$;
CREATE TRIGGER threads_drop_checkpoints AFTER DELETE ON threads FOR EACH ROW
  EXECUTE FUNCTION drop_thread_checkpoints();
