"""pgvectorizer's SQL as released artefacts: building them (build, sqltext), choosing the
scripts that take a database from one version to another (scripts), and what a client of
the database may expect of its version (the versions this package works with)."""
