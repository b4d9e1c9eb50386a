-- Reports to the operators and their outcome (consumers/reports.py, store/reports.py). One row per report; a
-- decision read before its report (a replay reads both topics in any order) leaves a row the report then fills.
-- The newest decision wins (resolved_at).
CREATE TABLE IF NOT EXISTS reports (
    report_id   text PRIMARY KEY,
    reporter_id text,
    post_id     text,
    user_id     text NOT NULL,
    reason      text,
    comment     text NOT NULL DEFAULT '',
    filed_at    timestamptz,
    action      text,
    note        text NOT NULL DEFAULT '',
    resolved_at timestamptz
);
CREATE INDEX IF NOT EXISTS reports_open ON reports (filed_at, report_id) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS reports_by_reporter ON reports (reporter_id, report_id DESC);

-- A post taken down by the operators is a tombstone like a deleted one; moderated says so, for its author's view.
ALTER TABLE posts ADD COLUMN IF NOT EXISTS moderated boolean NOT NULL DEFAULT false;
