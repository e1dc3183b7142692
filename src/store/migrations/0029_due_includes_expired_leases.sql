-- 0029: on a round that looks for expired leases, "still due" also says whether any are left.
-- A worker's once-a-second round on a quiet queue offers one slot (so that the API's new runs
-- can still start in process meanwhile): when it finds a dead worker's runs, the worker's next
-- round, offered every free slot, takes the rest at once. A run out of attempts is failed
-- without taking a slot, so only this flag tells the worker that more expired leases remain.
CREATE OR REPLACE FUNCTION claim_runs_then_due(p_worker text, p_lease_ms int, p_limit int, p_max_attempts int,
                                               p_default_cap int, p_reclaim boolean)
  RETURNS TABLE (tenant_id uuid, run_id uuid, thread_id uuid, attempt int, waited_ms double precision, due boolean)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
BEGIN
  RETURN QUERY SELECT c.tenant_id, c.run_id, c.thread_id, c.attempt, c.waited_ms, NULL::boolean
    FROM claim_runs(p_worker, p_lease_ms, p_limit, p_max_attempts, p_default_cap, p_reclaim) c;
  RETURN QUERY SELECT NULL::uuid, NULL::uuid, NULL::uuid, NULL::int, NULL::double precision,
    EXISTS (SELECT 1 FROM runs r WHERE r.status = 'pending' AND r.run_after <= now())
    OR (p_reclaim AND EXISTS (SELECT 1 FROM runs r WHERE r.status = 'running' AND r.lease_expires < now()));
END $$;
