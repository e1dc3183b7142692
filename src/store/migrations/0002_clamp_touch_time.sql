-- 0002: touch_api_keys takes its time from the caller; never let it move last_used_at past the
-- database's own clock (a future time would freeze other tenants' keys' last-used times).
CREATE OR REPLACE FUNCTION touch_api_keys(p_ids uuid[], p_at timestamptz)
  RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = agentplane, pg_temp
AS $$
  UPDATE api_keys SET last_used_at = least(p_at, now())
  WHERE id = ANY (p_ids) AND (last_used_at IS NULL OR last_used_at < least(p_at, now()))
$$;
