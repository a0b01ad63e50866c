-- What the replica was built from, and what the next run was asked to do.
--
-- source_shape: one row, the source tables and column spellings the replica was last built
-- from (sync/bigquery/shape.py renders it). A later run compares the source with it, so a
-- table that vanishes for an hour fails the run by name instead of switching a feature off.
-- A database synced by an earlier release has no row yet: its first run records one from
-- the source and from what the replica already holds (sync/run/shape_check.py).
CREATE TABLE source_shape (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    shape        jsonb NOT NULL,
    recorded_by  text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

-- sync_requests: work an operator, a migration or a shape change asked for. The next new run
-- takes every pending request when its first page commits: a full resync, or a re-read of
-- the named streams from the beginning (no purge). A migration that adds a stored column
-- inserts a 're-read' here, so the column fills without anyone remembering a full resync.
CREATE TABLE sync_requests (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('full_resync', 'reread')),
    streams       text[] NOT NULL DEFAULT '{opportunities,call_links}'
        CHECK (streams <@ '{opportunities,call_links}'::text[] AND cardinality(streams) > 0),
    reason        text NOT NULL,
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    run_id        uuid
);
CREATE INDEX idx_sync_requests_pending ON sync_requests (id) WHERE run_id IS NULL;
