-- The Fivetran webhook (main.py::fivetran_webhook) and the sync meet here, so that a burst of
-- sync_end events costs one tick and a sync_end that lands while a run is in progress is followed
-- by a run that begins after it (sync/run/wakeups.py has the rules).
--
-- run_begun_at sits on sync_status because the pipeline already holds that row when a run
-- begins: stamping it never waits for the webhook. The webhook's own facts are in a row of
-- their own, which it locks while it decides and publishes, so it never waits for a page write.
-- Both start NULL on a database that already holds synced rows: no run has begun under these
-- rules yet, and the first accepted sync_end publishes a tick.
ALTER TABLE sync_status ADD COLUMN run_begun_at timestamptz;

CREATE TABLE sync_wakeups (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    requested_at timestamptz,
    tick_published_at timestamptz
);

INSERT INTO sync_wakeups (id) VALUES (true);
