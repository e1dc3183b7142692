-- 0014: the columns that hold a whole graph state (a thread's cached values, a run's result,
-- checkpoint blobs) are compressed with lz4 where the server has it: pglz costs several times
-- more CPU per stored state, and every run end writes two. Values stored before keep pglz.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
    ALTER TABLE threads ALTER COLUMN "values" SET COMPRESSION lz4;
    ALTER TABLE runs ALTER COLUMN result SET COMPRESSION lz4;
    ALTER TABLE checkpoint_blobs ALTER COLUMN data SET COMPRESSION lz4;
  END IF;
END $$;
