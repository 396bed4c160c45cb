-- Composite keys, a schema other than public, and identifiers that need quoting.
\set VERBOSITY terse
CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema"."Blog Posts" (
    "Tenant" text, "Post ID" bigint, "Body Text" varchar(2000), "select" text, "Title;--" text,
    PRIMARY KEY ("Tenant", "Post ID"));
INSERT INTO "My Schema"."Blog Posts" VALUES ('acme', 1, 'hello', 's', 't'), ('o''hara', 1, 'hi', 's', 't');
SELECT ai.create_vectorizer('"My Schema"."Blog Posts"', loading => ai.loading_column('Body Text'),
    embedding => ai.embedding_sentence_transformers(), row_filter => '"select" IS NOT NULL') AS vid \gset
SELECT name, source_schema, source_table, source_pk, queue_table AS q FROM ai.vectorizer WHERE id = :vid \gset
SELECT :'name' AS name, :'source_schema' AS source_schema, :'source_table' AS source_table;
SELECT :'source_pk'::jsonb AS source_pk;
SELECT "Tenant", "Post ID" FROM ai.:q ORDER BY 1, 2;
TRUNCATE ai.:q;
UPDATE "My Schema"."Blog Posts" SET "Post ID" = 2 WHERE "Tenant" = 'acme';
UPDATE "My Schema"."Blog Posts" SET "Body Text" = 'hi!' WHERE "Tenant" = 'o''hara';
UPDATE "My Schema"."Blog Posts" SET "Title;--" = 'ignored';
SELECT "Tenant", "Post ID" FROM ai.:q ORDER BY 1, 2;
\d "My Schema"."Blog Posts_embedding_store"
SELECT pg_get_viewdef('"My Schema"."Blog Posts_embedding"'::regclass);
SELECT ai.drop_vectorizer(:'name', drop_all => true);
DROP SCHEMA "My Schema" CASCADE;
