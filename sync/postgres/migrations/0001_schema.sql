-- opportunity-sync schema, version 1.
-- Applied once, in one transaction, under an advisory lock (see sync/schema.py).

CREATE TABLE opportunities (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gong_opportunity_id text NOT NULL UNIQUE,
    name                text NOT NULL,
    account_name        text,
    owner_email         text,
    stage               text,
    close_date          date,
    amount              numeric(18, 2),
    health_score        numeric(5, 2) CHECK (health_score BETWEEN 0 AND 100),
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- The source row's own change stamp (last_modified_date or _fivetran_synced) as last read.
    source_modified_at  timestamptz,
    -- Digest of every synced column; equal digests mean nothing to write.
    content_hash        bytea NOT NULL,
    deleted_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- The app's three filters, exactly as specified.
CREATE INDEX idx_opportunities_owner ON opportunities (owner_email, updated_at DESC);
CREATE INDEX idx_opportunities_stage ON opportunities (stage, close_date);
CREATE INDEX idx_opportunities_health ON opportunities (health_score) WHERE health_score IS NOT NULL;

CREATE TABLE call_opportunities (
    call_id        text NOT NULL,
    opportunity_id bigint NOT NULL REFERENCES opportunities (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, opportunity_id)
);
CREATE INDEX idx_call_opportunities_opportunity ON call_opportunities (opportunity_id);

-- Mirror of Gong's live call links by source id. A link can arrive before its opportunity
-- has synced; keeping it here means it lands in call_opportunities the moment it does.
CREATE TABLE call_links (
    call_id             text NOT NULL,
    gong_opportunity_id text NOT NULL,
    source_synced_at    timestamptz,
    PRIMARY KEY (gong_opportunity_id, call_id)
);

CREATE TABLE sync_status (
    entity_type          text PRIMARY KEY,
    last_sync_timestamp  timestamptz,
    items_synced         bigint NOT NULL DEFAULT 0,
    error_count          bigint NOT NULL DEFAULT 0,
    status               text NOT NULL DEFAULT 'never_run'
        CHECK (status IN ('never_run', 'running', 'success', 'failed')),
    last_error           text,
    last_success_at      timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    -- In-flight run. NULL run_id means no run is in progress.
    run_id               uuid,
    run_trigger          text,
    run_started_at       timestamptz,
    run_next_page        integer,
    run_upper_bound      timestamptz,
    run_cursor_stamp     timestamptz,
    run_cursor_id        text,
    run_opportunities_done boolean NOT NULL DEFAULT false,
    run_link_upper_bound timestamptz,
    run_link_cursor_stamp timestamptz,
    run_link_cursor_key  text,
    run_links_done       boolean NOT NULL DEFAULT false,
    link_watermark       timestamptz,
    last_resync_message_id text,
    -- Single-flight lease: a row, not a session lock, so it survives transaction poolers and
    -- expires on its own when an invocation is killed.
    lease_owner          uuid,
    lease_expires_at     timestamptz
);
INSERT INTO sync_status (entity_type) VALUES ('opportunities');

CREATE TABLE sync_runs (
    run_id          uuid PRIMARY KEY,
    trigger         text NOT NULL CHECK (trigger IN ('tick', 'full_resync')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    status          text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'success', 'failed', 'superseded')),
    pages           integer NOT NULL DEFAULT 0,
    rows_read       bigint NOT NULL DEFAULT 0,
    rows_inserted   bigint NOT NULL DEFAULT 0,
    rows_updated    bigint NOT NULL DEFAULT 0,
    rows_unchanged  bigint NOT NULL DEFAULT 0,
    rows_skipped    bigint NOT NULL DEFAULT 0,
    rows_degraded   bigint NOT NULL DEFAULT 0,
    rows_deleted    bigint NOT NULL DEFAULT 0,
    links_added     bigint NOT NULL DEFAULT 0,
    links_removed   bigint NOT NULL DEFAULT 0,
    error           text
);
CREATE INDEX idx_sync_runs_started ON sync_runs (started_at DESC);

CREATE TABLE sync_rejections (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id              uuid NOT NULL,
    source_id           text,
    kind                text NOT NULL CHECK (kind IN ('skipped', 'degraded')),
    reason              text NOT NULL,
    field_values        jsonb NOT NULL DEFAULT '{}'::jsonb,
    rejected_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_sync_rejections_run ON sync_rejections (run_id);
CREATE INDEX idx_sync_rejections_time ON sync_rejections (rejected_at);

-- What the app reads: live rows only, with the 0-10 display score.
CREATE VIEW active_opportunities AS
SELECT o.id, o.gong_opportunity_id, o.name, o.account_name, o.owner_email, o.stage,
       o.close_date, o.amount, o.health_score,
       round(o.health_score / 10, 1) AS health_score_display,
       o.metadata, o.source_modified_at, o.created_at, o.updated_at
FROM opportunities o
WHERE o.deleted_at IS NULL;
