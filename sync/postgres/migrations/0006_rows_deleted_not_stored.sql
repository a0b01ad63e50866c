-- Rows deleted in the source and never stored get their own count in sync_runs, so read =
-- inserted + updated + unchanged + skipped + deleted + deleted-never-stored holds for every run.
-- Runs recorded earlier counted them in rows_unchanged; for those the new column is 0. A
-- constant default: no row is rewritten, and a run in flight carries on adding to it.
ALTER TABLE sync_runs ADD COLUMN rows_deleted_not_stored bigint NOT NULL DEFAULT 0;
