-- 0016: a thread's cached values are stored as `json` (the text as written) instead of `jsonb`.
-- Every run that ends writes the thread's whole state, and every thread read sends it out: as
-- jsonb, PostgreSQL built a tree of it on the way in (jsonb_in took a quarter of its CPU on a
-- growing conversation) and wrote it back out on the way out; as json it checks the text and
-- stores it. Searching threads by values casts to jsonb then (rarer than writes and reads).
ALTER TABLE threads ALTER COLUMN "values" TYPE json USING "values"::json;
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
    ALTER TABLE threads ALTER COLUMN "values" SET COMPRESSION lz4;
  END IF;
END $$;
