-- Catalog writes. ai.vectorizer is written only by these SECURITY DEFINER functions, which check
-- who asks; so its names can be trusted later, even by a superuser's DROP TABLE, and vectorizer
-- admins need no write access to it and no CREATE on schema ai (which would let them plant
-- overloads of ai.* functions that others then call). ai.grant_vectorizer_usage(..., admin)
-- grants EXECUTE on them.

-- session_user is the login role: neither SET ROLE nor a definer changes it, and a member of a
-- role can act as that role anyway.
CREATE FUNCTION ai._vectorizer_check_caller(caller name, what text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF caller IS NULL OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = caller)
       OR NOT pg_has_role(session_user, caller, 'MEMBER') THEN
        RAISE EXCEPTION '%: role % may not act as role %', what, session_user, coalesce(caller::text, '(none)')
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- Says clearly who may manage vectorizers, instead of "permission denied for function ...".
-- ai.grant_vectorizer_usage(role) lets a role manage vectorizers on tables it owns; with admin,
-- on any table it may create triggers on, and run them in the server (ai._vectorizer_is_admin).
CREATE FUNCTION ai._vectorizer_require_admin(what text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT has_function_privilege('ai._vectorizer_register(name, regclass, text, jsonb, name, name)', 'EXECUTE') THEN
        RAISE EXCEPTION '%: role % may not manage vectorizers', what, current_user
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('A superuser can allow it: SELECT ai.grant_vectorizer_usage(%L);', current_user);
    END IF;
END $$;

-- A vectorizer admin: granted ai.grant_vectorizer_usage(role, admin => true), or a superuser.
-- Admins may run vectorizers inside the server (execute_vectorizer, pg_cron jobs, ai.embed),
-- whose Python calls providers with the server's keys, and create vectorizers on tables they
-- do not own.
CREATE FUNCTION ai._vectorizer_is_admin(role_name name) RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN has_function_privilege(role_name, 'ai.execute_vectorizer(int4, int8, float8)', 'EXECUTE');

-- A role that is not an admin creates vectorizers only on tables it owns (or a role it has
-- the rights of owns), as PostgreSQL itself asks of CREATE TRIGGER's owner in all but name.
-- Nor may it have the vectorizer run inside the server (scheduling_pg_cron).
CREATE FUNCTION ai._vectorizer_check_owner(caller name, source regclass, scheduling jsonb) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF ai._vectorizer_is_admin(caller) THEN
        RETURN;
    END IF;
    IF NOT pg_has_role(caller, (SELECT relowner FROM pg_class WHERE oid = source), 'USAGE') THEN
        RAISE EXCEPTION 'create_vectorizer: role % may create vectorizers only on tables it owns, and % is owned by %',
            caller, source, (SELECT relowner::regrole FROM pg_class WHERE oid = source)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('A superuser can allow it on other tables: SELECT ai.grant_vectorizer_usage(%L, admin => true);', caller);
    END IF;
    IF scheduling->>'implementation' = 'pg_cron' THEN
        RAISE EXCEPTION 'create_vectorizer: role % may not schedule vectorizers in the server (scheduling_pg_cron runs the embedding inside PostgreSQL, with the server''s keys)', caller
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Run pgvectorizer worker (scheduling => ai.scheduling_none()), or ask a superuser for ai.grant_vectorizer_usage(role, admin => true).';
    END IF;
END $$;

-- Records a vectorizer and makes its queue, failed-items table and trigger function, owned by
-- the caller. Everything put into SQL here comes from the system catalogs or is quoted; the
-- config is only stored (the trigger body built from it runs as the caller).
CREATE FUNCTION ai._vectorizer_register
( caller name
, source regclass
, name text
, config jsonb
, queue_schema name
, queue_table name
) RETURNS ai.vectorizer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v ai.vectorizer;
BEGIN
    PERFORM ai._vectorizer_check_caller(caller, 'create_vectorizer');
    IF NOT has_table_privilege(caller, source, 'TRIGGER') THEN
        RAISE EXCEPTION 'create_vectorizer: role % may not create triggers on %', caller, source
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM ai._vectorizer_check_owner(caller, source, config->'scheduling');
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = queue_schema) THEN
        RAISE EXCEPTION 'create_vectorizer: queue schema "%" does not exist', queue_schema USING ERRCODE = 'invalid_schema_name';
    END IF;
    IF queue_schema <> 'ai' AND NOT has_schema_privilege(caller, queue_schema, 'CREATE') THEN
        RAISE EXCEPTION 'create_vectorizer: role % may not create tables in queue schema "%"', caller, queue_schema
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT n.nspname, c.relname INTO v.source_schema, v.source_table
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;
    v.source_pk := ai._source_pk(source);
    v.id := nextval(pg_get_serial_sequence('ai.vectorizer', 'id'));
    v.name := name;
    v.queue_schema := queue_schema;
    v.queue_table := ai._check_identifier(coalesce(queue_table, '_vectorizer_q_' || v.id), 'queue table');
    v.queue_failed_table := ai._check_identifier(coalesce(queue_table || '_failed', '_vectorizer_q_failed_' || v.id), 'failed-items table');
    v.trigger_name := '_vectorizer_src_trg_' || v.id;
    IF to_regclass(format('%I.%I', v.queue_schema, v.queue_table)) IS NOT NULL
       OR to_regclass(format('%I.%I', v.queue_schema, v.queue_failed_table)) IS NOT NULL THEN
        RAISE EXCEPTION 'create_vectorizer: queue table %.% or its failed-items table already exists',
            quote_ident(v.queue_schema), quote_ident(v.queue_table) USING ERRCODE = 'duplicate_table';
    END IF;
    v.config := config;
    v.disabled := false;
    v.owner := caller;
    v.created_at := now();
    INSERT INTO ai.vectorizer SELECT v.*;
    -- Its totals row exists from the start: a first report then never has to insert it,
    -- which could wait on another transaction inserting it too.
    INSERT INTO ai._vectorizer_worker_progress (vectorizer_id) VALUES (v.id);
    PERFORM ai._vectorizer_create_queue(v);
    PERFORM ai._vectorizer_schedule(v);
    RETURN v;
END $$;

CREATE FUNCTION ai._vectorizer_unregister(vectorizer_id int4, drop_all bool) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v ai.vectorizer := ai._vectorizer_get(vectorizer_id, true);
BEGIN
    PERFORM ai._vectorizer_check_caller(v.owner, 'drop_vectorizer');
    PERFORM ai._vectorizer_drop_objects(v, drop_all);
    DELETE FROM ai.vectorizer WHERE id = v.id;
END $$;

CREATE FUNCTION ai._vectorizer_set_disabled(vectorizer_id int4, disabled bool) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v ai.vectorizer := ai._vectorizer_get(vectorizer_id, true);
BEGIN
    PERFORM ai._vectorizer_check_caller(v.owner, CASE WHEN disabled THEN 'disable_vectorizer_schedule'
                                                      ELSE 'enable_vectorizer_schedule' END);
    UPDATE ai.vectorizer SET disabled = _vectorizer_set_disabled.disabled WHERE id = v.id;
    PERFORM ai._vectorizer_set_job_active(v.id, NOT disabled);
END $$;
