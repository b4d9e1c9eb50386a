-- Databases migrated with the first version of 030_search.sql: add the day lexeme to `doc` (see 030). A no-op where
-- 030 already created it. Dropping the column drops its index, which is created again.
DO $$
BEGIN
    IF pg_get_expr((SELECT adbin FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                    WHERE d.adrelid = 'search_posts'::regclass AND a.attname = 'doc'), 'search_posts'::regclass)
       NOT LIKE '%~d%' THEN
        ALTER TABLE search_posts DROP COLUMN doc;
        ALTER TABLE search_posts ADD COLUMN doc tsvector GENERATED ALWAYS AS (
            to_tsvector('english'::regconfig, text)
            || array_to_tsvector(ARRAY['~d' || floor(extract(epoch FROM created_at - timestamptz '1970-01-01 00:00:00+00') / 86400)::int::text])
        ) STORED;
        CREATE INDEX IF NOT EXISTS search_posts_doc ON search_posts USING gin (doc) WHERE deleted_at IS NULL;
    END IF;
END $$;
