-- Databases whose 030 predates the RUM index: `doc` loses the day lexeme of 031 and its GIN index becomes the RUM index
-- of 030 (matches read from the index newest first). A no-op where 030 already created them.
CREATE EXTENSION IF NOT EXISTS rum;
DO $$
BEGIN
    IF pg_get_expr((SELECT adbin FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                    WHERE d.adrelid = 'search_posts'::regclass AND a.attname = 'doc'), 'search_posts'::regclass)
       LIKE '%~d%' THEN
        ALTER TABLE search_posts DROP COLUMN doc;  -- and its index
        ALTER TABLE search_posts ADD COLUMN doc tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_class c JOIN pg_am a ON a.oid = c.relam
                   WHERE c.oid = to_regclass('search_posts_doc') AND a.amname = 'rum') THEN
        DROP INDEX IF EXISTS search_posts_doc;
        CREATE INDEX search_posts_doc ON search_posts USING rum (doc rum_tsvector_addon_ops, created_at)
            WITH (attach = 'created_at', to = 'doc') WHERE deleted_at IS NULL;
    END IF;
END $$;
