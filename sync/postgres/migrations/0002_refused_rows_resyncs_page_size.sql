-- opportunity-sync schema, version 2: what keeps one row, one message or one slow page from
-- stalling the sync. Runs in place on a database holding rows: nothing is rewritten or re-keyed,
-- and the one column dropped (last_resync_message_id) is carried into its replacement first.

-- Rows Postgres refused when a page was isolated row by row (sync/isolate.py), keyed by the
-- digest of their content. A re-read of the same content is refused again (or stored with the
-- same value NULL) without being sent to Postgres, so the next run does not trip on it.
-- Pruned with the rejections (SYNC_REJECTION_RETENTION_DAYS).
CREATE TABLE sync_refused_rows (
    content_hash  bytea PRIMARY KEY,
    -- The column stored as NULL so that the row could be written; NULL when it was skipped.
    nulled_column text,
    -- Where Postgres refused it: SQLSTATE, table, column, constraint (never the row's values).
    error         jsonb NOT NULL,
    refused_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_sync_refused_rows_time ON sync_refused_rows (refused_at);

-- full_resync messages already started, replacing sync_status.last_resync_message_id (which
-- remembered one). Pub/Sub keeps an unacknowledged message for at most 7 days, so an id older
-- than that cannot be redelivered; the sync forgets ids after 8 days. Message ids are at most
-- 128 printable ASCII characters (sync/messages.py refuses longer ones).
CREATE TABLE sync_resync_messages (
    message_id text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_sync_resync_messages_time ON sync_resync_messages (started_at);
INSERT INTO sync_resync_messages (message_id)
SELECT last_resync_message_id FROM sync_status WHERE last_resync_message_id IS NOT NULL;
ALTER TABLE sync_status DROP COLUMN last_resync_message_id;

-- A page that timed out is retried at half the size (down to a floor) and grows back after
-- pages that commit. NULL means the configured SYNC_PAGE_SIZE.
ALTER TABLE sync_status ADD COLUMN page_size_limit integer CHECK (page_size_limit > 0);
-- The smallest page a run had to use, when it had to shrink; NULL when it never did.
ALTER TABLE sync_runs ADD COLUMN smallest_page_size integer;
