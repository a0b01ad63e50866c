-- One BigQuery evaluation per run: where each stream stands in its run's query result, the
-- probe's marks, what each run cost in BigQuery, future-stamped rows, and the ids a full
-- resync read (its purge is an anti-join against them).
--
-- Upgrades a database in place: only new nullable or defaulted columns and a new table, no
-- row rewritten. A run in flight carries on from its stored cursor: with no job stored, its
-- next page evaluates again from that cursor with the run's frozen bound. It records no ids
-- for the purge (run_ids_complete stays false), so it cannot purge from a partial list.

ALTER TABLE sync_status
    -- The opportunity stream's result: the job (jobs are regional, so its location too) and
    -- the rows of it that committed pages consumed. The keyset cursor stays the truth.
    ADD COLUMN run_job_project       text,
    ADD COLUMN run_job_location      text,
    ADD COLUMN run_job_id            text,
    ADD COLUMN run_job_offset        bigint CHECK (run_job_offset >= 0),
    -- The same for the call-link stream.
    ADD COLUMN run_link_job_project  text,
    ADD COLUMN run_link_job_location text,
    ADD COLUMN run_link_job_id       text,
    ADD COLUMN run_link_job_offset   bigint CHECK (run_link_job_offset >= 0),
    -- Per source table {"latest": stamp, "rows": n}: seen by the probe of the run in progress,
    -- and by that of the last completed run (compared by the next tick's probe).
    ADD COLUMN run_source_marks      jsonb,
    ADD COLUMN source_marks          jsonb,
    -- True while a full run has recorded every id it read since its first page.
    ADD COLUMN run_ids_complete      boolean NOT NULL DEFAULT false;

ALTER TABLE sync_runs
    -- NULL for runs recorded before these were counted, and bytes whenever BigQuery did not say.
    ADD COLUMN bigquery_jobs            integer,
    ADD COLUMN bigquery_bytes_processed bigint,
    ADD COLUMN bigquery_bytes_billed    bigint,
    ADD COLUMN rows_future_stamped      bigint NOT NULL DEFAULT 0;

-- Raw source ids a full run read, one row per id per page (a re-read may repeat one). No key:
-- COPY appends, and the purge's anti-join does not care about repeats.
CREATE TABLE sync_run_source_ids (
    run_id    uuid NOT NULL,
    source_id text NOT NULL
);
