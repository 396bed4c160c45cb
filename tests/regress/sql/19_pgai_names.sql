-- pgai's names: ai.vectorizer_queue_pending by name, ai.grant_to_default, and a grant_to role
-- that does not exist (warned about and skipped).
CREATE TABLE names_doc (id int PRIMARY KEY, body text);
SELECT ai.create_vectorizer('names_doc', name => 'names_vec', loading => ai.loading_column('body'),
    embedding => ai.embedding_openai('text-embedding-3-small', 4), scheduling => ai.scheduling_none(),
    indexing => ai.indexing_none(), grant_to => ai.grant_to('no_such_role_for_names')) > 0 AS created;
SELECT config->'grant_to' AS grant_to FROM ai.vectorizer WHERE name = 'names_vec';
INSERT INTO names_doc VALUES (1, 'one'), (2, 'two');
UPDATE names_doc SET body = 'uno' WHERE id = 1;
SELECT ai.vectorizer_queue_pending('names_vec') AS quick, ai.vectorizer_queue_pending('names_vec', exact_count => true) AS exact;
SELECT ai.vectorizer_queue_pending('no_such_vec');
BEGIN;
SET LOCAL ai.grant_to_default = ' zeta , alpha';
SELECT ai.grant_to() AS defaults, ai.grant_to('beta', 'alpha') AS with_named;
ROLLBACK;
SELECT ai.grant_to() AS no_setting;
SELECT ai.drop_vectorizer('names_vec', drop_all => true);
DROP TABLE names_doc;
