-- pgvectorizer: the `ai` extension, version @EXTVERSION@.
-- Built by `make` from the files in sql/, concatenated in name order.
\echo Use "CREATE EXTENSION ai CASCADE" to load this file. \quit

-- A plain install (`pgvectorizer install`) is the same schema without the extension: one of the
-- two per database, said before the first table would fail on a name already taken.
DO $guard$
BEGIN
    IF pg_catalog.to_regclass('ai.vectorizer') IS NOT NULL THEN
        RAISE EXCEPTION 'schema ai already holds pgvectorizer as a plain install (pgvectorizer install): the ai extension cannot be created beside it'
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Keep the plain install (pgvectorizer install upgrades it), or drop its vectorizers and DROP SCHEMA ai CASCADE first.';
    END IF;
END $guard$;
