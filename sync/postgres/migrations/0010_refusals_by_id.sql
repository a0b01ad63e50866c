-- A page's write looks up, in one round trip before any row is mapped, the refusals remembered
-- for its ids (sync/postgres/writer.py): a refusal is keyed by the digest of the refused content,
-- which is only known once the row is mapped, so it is now also stored under the row's id (or a
-- link's opportunity id). Refusals remembered before this migration keep source_id NULL and are
-- returned for every page until they expire with the rejections.
ALTER TABLE sync_refused_rows ADD COLUMN source_id text;
-- A hash index: an id can be longer than a btree entry may be (a refused 3,000-character id),
-- and the look-up only asks for equality.
CREATE INDEX idx_sync_refused_rows_source_id ON sync_refused_rows USING hash (source_id);
