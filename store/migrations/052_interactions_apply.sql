-- A batch of likes, reposts or bookmarks applied in one call (store/interactions.py `PostgresInteractions.apply`),
-- so the consumer makes one round trip per batch instead of five (BEGIN, two locking statements, the upsert,
-- COMMIT): under load each round trip waits for a CPU, and the batches queue behind the slowest step.
-- Each statement of a PL/pgSQL function sees what committed before it (as separate statements of a transaction
-- would), and unqualified names resolve through the caller's search_path (a replay's shadow schema first).
--
-- 1. The posts' counter rows exist, then are locked in id order: writers of the same posts queue instead of
--    deadlocking, and a concurrent delete's tombstone is seen by the next statement.
-- 2. Each (post, kind, user) row is last-writer-wins by changed_at (at the same instant the active state wins);
--    the counters move by what the upsert changed; events about a tombstoned post change nothing.
CREATE OR REPLACE FUNCTION interactions_apply(
    post_ids text[], kinds text[], user_ids text[], actives boolean[], changed_ats timestamptz[]
) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO post_counters (post_id) SELECT DISTINCT unnest(post_ids) ORDER BY 1 ON CONFLICT DO NOTHING;
    PERFORM 1 FROM post_counters WHERE post_id = ANY(post_ids) ORDER BY post_id FOR UPDATE;
    WITH incoming AS (
        SELECT * FROM unnest(post_ids, kinds, user_ids, actives, changed_ats)
            AS x(post_id, kind, user_id, active, changed_at)
        WHERE NOT EXISTS (SELECT 1 FROM post_counters c WHERE c.post_id = x.post_id AND c.deleted_at IS NOT NULL)
    ), earlier AS (
        SELECT i.post_id, i.kind, i.user_id, i.active FROM interactions i JOIN incoming USING (post_id, kind, user_id)
    ), changed AS (
        INSERT INTO interactions AS i (post_id, kind, user_id, active, changed_at) SELECT * FROM incoming
        ON CONFLICT (post_id, kind, user_id) DO UPDATE SET active = EXCLUDED.active, changed_at = EXCLUDED.changed_at
        WHERE (EXCLUDED.changed_at, EXCLUDED.active) > (i.changed_at, i.active)
        RETURNING i.post_id, i.kind, i.user_id, i.active
    ), per_post AS (
        SELECT c.post_id,
               sum(c.active::int - coalesce(e.active, false)::int) FILTER (WHERE c.kind = 'like') AS likes,
               sum(c.active::int - coalesce(e.active, false)::int) FILTER (WHERE c.kind = 'repost') AS reposts
        FROM changed c LEFT JOIN earlier e USING (post_id, kind, user_id)
        GROUP BY c.post_id
    )
    UPDATE post_counters c
    SET like_count = c.like_count + coalesce(p.likes, 0), repost_count = c.repost_count + coalesce(p.reposts, 0)
    FROM per_post p WHERE c.post_id = p.post_id;
END
$fn$;
