-- 0025: a run failed by its claim (RunAttemptsExceeded: its workers were lost on every attempt)
-- sends its webhook too. claim_runs ends such a run without a worker, so no finishing transaction
-- queues the POST (exec/worker/webhooks.h): this trigger does, in the claim's transaction, with
-- the payload the worker would send (values: the thread's state; error: the run's; no start time:
-- no attempt got to its end).
GRANT INSERT ON webhook_deliveries TO agentplane_system;

CREATE FUNCTION queue_lost_run_webhook() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
BEGIN
  INSERT INTO webhook_deliveries (tenant_id, id, run_id, url, payload)
  VALUES (NEW.tenant_id, gen_random_uuid(), NEW.run_id, NEW.kwargs ->> 'webhook',
          json_build_object('run_id', NEW.run_id, 'thread_id', NEW.thread_id, 'assistant_id', NEW.assistant_id,
            'created_at', NEW.created_at, 'updated_at', NEW.updated_at, 'status', NEW.status,
            'metadata', NEW.metadata, 'kwargs', NEW.kwargs, 'multitask_strategy', NEW.multitask_strategy,
            'run_started_at', NULL, 'run_ended_at', now(),
            'values', (SELECT t."values" FROM threads t WHERE t.tenant_id = NEW.tenant_id AND t.thread_id = NEW.thread_id),
            'error', NEW.result -> '__error__')::text);
  RETURN NULL;
END $$;
ALTER FUNCTION queue_lost_run_webhook() OWNER TO agentplane_system;
REVOKE ALL ON FUNCTION queue_lost_run_webhook() FROM PUBLIC;

CREATE TRIGGER runs_lost_webhook AFTER UPDATE OF status ON runs FOR EACH ROW
  WHEN (OLD.status = 'running' AND NEW.status = 'error' AND jsonb_typeof(NEW.kwargs -> 'webhook') = 'string'
        AND NEW.result -> '__error__' ->> 'error' = 'RunAttemptsExceeded')
  EXECUTE FUNCTION queue_lost_run_webhook();
