-- Interactions read model (consumers/interactions.py): likes, reposts, bookmarks, quotes and per-post counters.
--
-- `interactions` holds one row per (post, kind, user), kind 'like' | 'repost' | 'bookmark', last writer wins by
-- changed_at (an unlike keeps the row, inactive, so an older like arriving late changes nothing).
-- `quotes` holds one row per quoting post. `post_counters` holds the counts the consumer moves by what each write
-- changed (never counted at read time); `deleted_at` tombstones a deleted post, whose interactions are then dropped
-- and never come back.
CREATE TABLE IF NOT EXISTS interactions (
    post_id    text        NOT NULL,
    kind       text        NOT NULL,
    user_id    text        NOT NULL,
    active     boolean     NOT NULL,
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (post_id, kind, user_id)
);
CREATE TABLE IF NOT EXISTS quotes (
    post_id    text        PRIMARY KEY,
    quote_of   text        NOT NULL,
    active     boolean     NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS post_counters (
    post_id      text    PRIMARY KEY,
    like_count   integer NOT NULL DEFAULT 0,
    repost_count integer NOT NULL DEFAULT 0,
    quote_count  integer NOT NULL DEFAULT 0,
    deleted_at   timestamptz
);
-- Readers' pages: a user's bookmarks (newest first), a post's likers and reposters, a post's quotes.
CREATE INDEX IF NOT EXISTS interactions_by_user ON interactions (user_id, kind, changed_at DESC, post_id DESC) WHERE active;
CREATE INDEX IF NOT EXISTS interactions_by_post ON interactions (post_id, kind, changed_at DESC, user_id DESC) WHERE active;
CREATE INDEX IF NOT EXISTS quotes_of ON quotes (quote_of, post_id DESC) WHERE active;
