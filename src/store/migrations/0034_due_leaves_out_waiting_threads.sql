-- 0034: "runs still due" leaves out runs that wait behind a running run of their thread.
-- A worker in the same process as the API starts new runs at once only while the queue is quiet
-- (no run was due at its last claim round), so that queued runs go first. A run enqueued on a
-- busy thread (multitask_strategy enqueue) counted as due, so until that thread's run ended,
-- every new run of every tenant in that process went through the queue (a NOTIFY, a claim, a
-- read of the run). No claim can start it anyway: it becomes claimable when its thread's run
-- ends, and the worker that ends that run then claims at once (it sees the thread left busy).
-- Runs waiting for their tenant's cap still count: new runs of that tenant must not overtake
-- them, and other tenants' new runs queue behind them as before.
CREATE OR REPLACE FUNCTION claim_runs_then_due(p_worker text, p_lease_ms int, p_limit int, p_max_attempts int,
                                               p_default_cap int, p_reclaim boolean)
  RETURNS TABLE (tenant_id uuid, run_id uuid, thread_id uuid, attempt int, waited_ms double precision, due boolean)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
  SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  RETURN QUERY SELECT c.tenant_id, c.run_id, c.thread_id, c.attempt, c.waited_ms, NULL::boolean
    FROM claim_runs(p_worker, p_lease_ms, p_limit, p_max_attempts, p_default_cap, p_reclaim) c;
  RETURN QUERY SELECT NULL::uuid, NULL::uuid, NULL::uuid, NULL::int, NULL::double precision,
    EXISTS (SELECT 1 FROM runs r WHERE r.status = 'pending' AND r.run_after <= now()
              AND NOT EXISTS (SELECT 1 FROM runs y WHERE y.tenant_id = r.tenant_id AND y.thread_id = r.thread_id
                                AND y.status = 'running'))
    OR (p_reclaim AND EXISTS (SELECT 1 FROM runs r WHERE r.status = 'running' AND r.lease_expires < now()));
END $$;
