-- opportunity-sync schema, version 2: what keeps one row, one message or one slow page from
-- stalling the sync. Additive only: runs in place on a database holding rows.

-- Rows Postgres refused when a page was isolated row by row (sync/isolate.py), keyed by the
-- digest of their content. A re-read of the same content is refused again (or stored with the
-- same value NULL) without being sent to Postgres, so the next run does not trip on it.
-- Pruned with the rejections (SYNC_REJECTION_RETENTION_DAYS).
CREATE TABLE sync_refused_rows (
    content_hash  bytea PRIMARY KEY,
    -- The column stored as NULL so that the row could be written; NULL when it was skipped.
    nulled_column text,
    sqlstate      text NOT NULL,
    reason        text NOT NULL,
    refused_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_sync_refused_rows_time ON sync_refused_rows (refused_at);

-- full_resync messages already started. Pub/Sub keeps an unacknowledged message for at most
-- 7 days, so an id older than that cannot be redelivered; the sync prunes ids after 8 days.
-- Keyed by a digest so that a message id of any length fits the btree; the id itself is kept
-- (bounded) for people.
CREATE TABLE sync_resync_messages (
    message_key bytea PRIMARY KEY,
    message_id  text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_sync_resync_messages_time ON sync_resync_messages (started_at);
INSERT INTO sync_resync_messages (message_key, message_id)
SELECT sha256(convert_to(last_resync_message_id, 'UTF8')), left(last_resync_message_id, 200)
FROM sync_status
WHERE last_resync_message_id IS NOT NULL;

-- A page that timed out is retried at half the size (down to a floor) and grows back after
-- pages that commit. NULL means the configured SYNC_PAGE_SIZE.
ALTER TABLE sync_status ADD COLUMN page_size_limit integer CHECK (page_size_limit > 0);
-- The smallest page a run had to use, when it had to shrink; NULL when it never did.
ALTER TABLE sync_runs ADD COLUMN smallest_page_size integer;
