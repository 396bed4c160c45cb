-- pgvectorizer: the `ai` extension, version @EXTVERSION@.
-- Built by `make` from the files in sql/, concatenated in name order.
\echo Use "CREATE EXTENSION ai CASCADE" to load this file. \quit
