-- Deletes are guarded (sync/postgres/guard.py): a run that would soft-delete more than a share
-- of the live replica holds those deletes, records the hold here and logs deletes_held, and
-- `python -m sync release-deletes` approves them and asks for a re-read (sync_requests) that
-- derives them again from the source.
--
-- Upgrades a database in place: a column with a constant default (no row rewritten; a run in
-- flight carries on adding to it from 0) and two new tables. Nothing already stored changes.

-- Deletes a run held (a held purge adds here, as a purge adds to rows_deleted): read = inserted
-- + updated + unchanged + skipped + deleted + deleted-never-stored + held.
ALTER TABLE sync_runs ADD COLUMN rows_held bigint NOT NULL DEFAULT 0;

CREATE TABLE sync_delete_holds (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('purge', 'source_deletes')),
    -- The run that opened the hold, and the latest run that added to it.
    first_run_id  uuid NOT NULL,
    run_id        uuid NOT NULL,
    -- Deletes held: a purge's count as its latest run found it; distinct ids for source deletes.
    rows_held     bigint NOT NULL CHECK (rows_held >= 0),
    -- What the latest run weighed them against: its deletes before them, the live rows, the limit.
    run_deletes   bigint NOT NULL,
    live_rows     bigint NOT NULL,
    limit_rows    bigint NOT NULL,
    sample_ids    text[] NOT NULL DEFAULT '{}',
    held_at       timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- Set by release-deletes: who approved how many, and the re-read request (sync_requests.id).
    released_at   timestamptz,
    released_by   text,
    approved      bigint,
    request_id    bigint
);
-- One open hold per kind: a later run's held deletes of that kind join it.
CREATE UNIQUE INDEX sync_delete_holds_open ON sync_delete_holds (kind) WHERE released_at IS NULL;
CREATE INDEX sync_delete_holds_request ON sync_delete_holds (request_id) WHERE request_id IS NOT NULL;

-- The ids an open hold of source deletes keeps back, so that a row re-read by later runs is
-- counted once. Never applied: the release re-derives the deletes from the source.
CREATE TABLE sync_held_ids (
    hold_id   bigint NOT NULL REFERENCES sync_delete_holds (id) ON DELETE CASCADE,
    source_id text NOT NULL,
    PRIMARY KEY (hold_id, source_id)
);
