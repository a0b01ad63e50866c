-- Future-stamped rows are now read in the run's own order, placed at the frozen bound, instead
-- of one bounded extra page after it: an earlier release never read those beyond its first
-- SYNC_PAGE_SIZE. This release's results are ordered differently, so:
--
-- * the stored result positions of a run in flight point into a result of the old shape: drop
--   them, and its next page evaluates again from the stored keyset cursor with the run's frozen
--   bound (the cursor and bound stay; no row is re-keyed);
-- * a full run in flight cannot trust the ids it recorded against the old result: its purge is
--   refused (logged), and the next full resync purges;
-- * the probe's marks of the last completed run are dropped, so the next tick evaluates every
--   stream once, even when nothing landed since, and writes the future-stamped rows an earlier
--   release left unread. Rows already in Postgres are unchanged and cost no writes.
UPDATE sync_status SET
    run_job_project = NULL,
    run_job_location = NULL,
    run_job_id = NULL,
    run_job_offset = NULL,
    run_link_job_project = NULL,
    run_link_job_location = NULL,
    run_link_job_id = NULL,
    run_link_job_offset = NULL,
    run_ids_complete = false,
    source_marks = NULL;
