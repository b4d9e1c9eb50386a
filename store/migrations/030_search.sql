-- Search read model (consumers/search.py, store/search.py): its own copy of posts and profiles, indexed for search.
--
-- search_posts: one row per post id. A delete leaves a tombstone (deleted_at set, content cleared), so a late
-- post-parsed never brings the post back. `doc` is the English tsvector of the visible text, in a RUM index (the
-- rum extension, created by the services' provisioning) that keeps each post's created_at beside its lexemes: the
-- newest matches of a query are read from the index in time order, without a visit to the table per match.
-- search_users: one row per user id, each profile field last-writer-wins by the occurred_at of the event that set
-- it (`*_at`). A profile event arriving before the registration leaves handle NULL: such a row is never found.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS rum;

CREATE TABLE IF NOT EXISTS search_posts (
    post_id    text PRIMARY KEY,
    author_id  text NOT NULL,
    body       text NOT NULL DEFAULT '',
    html       text NOT NULL DEFAULT '',
    text       text NOT NULL DEFAULT '',
    hashtags   text[] NOT NULL DEFAULT '{}',
    mentions   text[] NOT NULL DEFAULT '{}',
    reply_to   text,
    created_at timestamptz NOT NULL,
    parsed_at  timestamptz,
    deleted_at timestamptz,
    doc        tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED
);
CREATE INDEX IF NOT EXISTS search_posts_doc ON search_posts USING rum (doc rum_tsvector_addon_ops, created_at)
    WITH (attach = 'created_at', to = 'doc') WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS search_posts_tags ON search_posts USING gin (hashtags) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS search_posts_author ON search_posts (author_id, post_id DESC) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS search_posts_replies ON search_posts (reply_to) WHERE deleted_at IS NULL AND reply_to IS NOT NULL;

CREATE TABLE IF NOT EXISTS search_users (
    user_id         text PRIMARY KEY,
    handle          text,
    handle_at       timestamptz,
    display_name    text NOT NULL DEFAULT '',
    display_name_at timestamptz,
    bio             text NOT NULL DEFAULT '',
    bio_at          timestamptz,
    avatar_url      text NOT NULL DEFAULT '',
    avatar_url_at   timestamptz,
    names           text GENERATED ALWAYS AS (lower(coalesce(handle, '') || ' ' || display_name)) STORED
);
CREATE INDEX IF NOT EXISTS search_users_handle ON search_users (lower(handle));
CREATE INDEX IF NOT EXISTS search_users_names ON search_users USING gin (names gin_trgm_ops);

-- AND / OR over tsqueries, so a parsed query (groups of terms) becomes one tsquery inside one fixed statement.
-- tsquery_and / tsquery_or return the other side when one is empty (a stop word), as `&&` and `||` do.
CREATE OR REPLACE AGGREGATE search_tsq_and (tsquery) (SFUNC = tsquery_and, STYPE = tsquery);
CREATE OR REPLACE AGGREGATE search_tsq_or (tsquery) (SFUNC = tsquery_or, STYPE = tsquery);
