-- opportunity-sync schema, version 5: a page whose invocation died before it committed (killed
-- by the platform's timeout, out of memory, kill -9) is read smaller on a later delivery.
--
-- Each invocation records its attempt here, in its own short transaction, before it reads the
-- page; the page's commit clears it, and so does a failure the invocation lived to handle. So
-- page_attempts counts the invocations since the last commit that died on the same page, and
-- page_attempt_size is the page size they read. After three, the page is read at half that size,
-- down to one row; a single row that still kills three invocations is refused (sync/pacing.py).
--
-- Upgrades in place: two columns, one with a constant default (no table rewrite), nothing else
-- touched. A run in flight continues from its stored cursor with no attempt recorded.
ALTER TABLE sync_status
    ADD COLUMN page_attempts     integer NOT NULL DEFAULT 0 CHECK (page_attempts >= 0),
    ADD COLUMN page_attempt_size integer CHECK (page_attempt_size > 0);
