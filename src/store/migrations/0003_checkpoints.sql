-- 0003: graph checkpoints (src/graph/postgres; format in docs/checkpoint_format.md).
-- Tenant tables: tenant_id first in every primary key, one RLS policy each.
-- checkpoints and checkpoint_blobs take a row per superstep, so they carry no foreign key to
-- tenants and no CHECK constraint: an FK check takes a KEY SHARE lock on the tenant's row,
-- which concurrent writers of one tenant turn into multixacts, and a CHECK is re-read for every
-- statement. Row-level security already pins tenant_id to the tenant of the transaction;
-- deleting a tenant deletes its rows from every tenant table. The saver is the only writer.

-- The channel and node names of a graph, shared by all of its checkpoints (a checkpoint's
-- header stores numbers per channel and node, in this order). `id` hashes the names.
CREATE TABLE checkpoint_layouts (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id text NOT NULL,
  channels text[] NOT NULL,
  nodes text[] NOT NULL,
  PRIMARY KEY (tenant_id, id)
);

-- One row per checkpoint. `header` (JSON) holds the versions, versions_seen and, per channel,
-- either a small value inline or a reference to the checkpoint_blobs row that holds it.
-- `metadata` holds the metadata fields other than source and step (NULL when there are none).
CREATE TABLE checkpoints (
  tenant_id uuid NOT NULL,
  thread_id text NOT NULL,
  checkpoint_ns text NOT NULL,
  checkpoint_id uuid NOT NULL,
  parent_id uuid,
  source text NOT NULL,
  step integer NOT NULL,
  metadata jsonb,
  header text NOT NULL,
  PRIMARY KEY (tenant_id, thread_id, checkpoint_ns, checkpoint_id)
);

-- Channel values too large to inline, keyed by the checkpoint that first stored them (`ref`),
-- so forked branches never collide. kind 0: a value; 1: a whole list; 2: a delta, the items
-- appended to the list stored at (channel, base).
CREATE TABLE checkpoint_blobs (
  tenant_id uuid NOT NULL,
  thread_id text NOT NULL,
  checkpoint_ns text NOT NULL,
  channel text NOT NULL,
  ref uuid NOT NULL,
  kind smallint NOT NULL,
  base uuid,
  data text NOT NULL,
  PRIMARY KEY (tenant_id, thread_id, checkpoint_ns, channel, ref)
);

-- Pending writes of the tasks of a checkpoint's step (LangGraph's checkpoint_writes).
CREATE TABLE checkpoint_writes (
  tenant_id uuid NOT NULL,
  thread_id text NOT NULL,
  checkpoint_ns text NOT NULL,
  checkpoint_id uuid NOT NULL,
  task_id text NOT NULL,
  idx integer NOT NULL,
  task_path text NOT NULL,
  channel text NOT NULL,
  value json,
  PRIMARY KEY (tenant_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx),
  FOREIGN KEY (tenant_id, thread_id, checkpoint_ns, checkpoint_id)
    REFERENCES checkpoints (tenant_id, thread_id, checkpoint_ns, checkpoint_id) ON DELETE CASCADE
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['checkpoint_layouts', 'checkpoints', 'checkpoint_blobs', 'checkpoint_writes'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
      USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
      WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO agentplane_app', t);
  END LOOP;
END $$;
