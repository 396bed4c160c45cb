-- Privileges. A new role sees nothing of schema ai until granted: users of vectorizers (a
-- worker, a reader of the status) get usage; admins may also create and drop vectorizers,
-- through the checked functions of 035_register.sql, never by writing the catalog.

CREATE FUNCTION ai.grant_vectorizer_usage(to_user name, admin bool DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    may_create bool := true;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = to_user) THEN
        RAISE EXCEPTION 'grant_vectorizer_usage: role "%" does not exist', to_user USING ERRCODE = 'undefined_object';
    END IF;
    -- Progress and errors are written only through the reporting functions, which check that
    -- the caller may use the vectorizer (ai._vectorizer_may_use); the tables are only read.
    -- Admins may also insert errors, for their vectorizers' triggers (a row filter that fails),
    -- and ai._vectorizer_errors_check holds them to vectorizers they may use.
    IF admin THEN
        -- A plain install's owner is no superuser: to hand an admin its vectorizers' queues
        -- (ai._vectorizer_give) it must be a member of that admin, as its CREATEROLE allows.
        IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
           AND NOT pg_has_role(current_user, to_user, 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT %I TO %I', to_user, current_user);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'grant_vectorizer_usage: role % may not make itself a member of role %, which it needs to hand that role its vectorizers',
                    current_user, to_user
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = 'Run it as the role that ran pgvectorizer install (with CREATEROLE), or as a superuser.';
            END;
        END IF;
        -- WITH GRANT OPTION: an admin passes these on through grant_to and to other roles.
        EXECUTE format('GRANT USAGE ON SCHEMA ai TO %I WITH GRANT OPTION', to_user);
        EXECUTE format('GRANT SELECT ON ai.vectorizer, ai.vectorizer_status, ai.vectorizer_errors, '
                       'ai._vectorizer_errors, ai._vectorizer_worker_progress, ai._vectorizer_progress_log, '
                       'ai._vectorizer_progress TO %I WITH GRANT OPTION', to_user);
        EXECUTE format('GRANT INSERT ON ai._vectorizer_errors TO %I', to_user);
        EXECUTE format('GRANT EXECUTE ON FUNCTION ai._vectorizer_register(name, regclass, text, jsonb, name, name), '
                       'ai._vectorizer_unregister(int4, bool), ai._vectorizer_set_disabled(int4, bool), '
                       'ai.execute_vectorizer(int4, int8, float8), ai.execute_vectorizer(text, int8, float8), '
                       'ai._vectorizer_index_job(int4), ai.embed(jsonb, text), ai._check_python_regex(text), '
                       'ai.openai_embed(text, text, text, text, int4, text, jsonb, jsonb, bool, jsonb), '
                       'ai.ollama_embed(text, text, text, text, jsonb, bool), ai.voyageai_embed(text, text, text, text, text, bool), '
                       'ai.cohere_embed(text, text, text, text, text, text, bool), '
                       'ai.litellm_embed(text, text, text, text, jsonb, bool) TO %I', to_user);
        EXECUTE format('GRANT EXECUTE ON PROCEDURE ai._vectorizer_job(int4) TO %I', to_user);
    ELSE
        EXECUTE format('GRANT USAGE ON SCHEMA ai TO %I', to_user);
        EXECUTE format('GRANT SELECT ON ai.vectorizer, ai.vectorizer_status, ai.vectorizer_errors TO %I', to_user);
        EXECUTE format('GRANT SELECT ON ai._vectorizer_errors, ai._vectorizer_worker_progress, '
                       'ai._vectorizer_progress_log, ai._vectorizer_progress TO %I', to_user);
        -- As in pgai, a user may manage vectorizers on the tables it owns (_vectorizer_register
        -- checks); running them in the server stays with admins. A plain install's owner must
        -- be able to hand it its queues, as for an admin.
        IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
           AND NOT pg_has_role(current_user, to_user, 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT %I TO %I', to_user, current_user);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE WARNING 'grant_vectorizer_usage: role % may not make itself a member of role %, so % may use vectorizers but not create them',
                    current_user, to_user, to_user;
                may_create := false;
            END;
        END IF;
        IF may_create THEN
            EXECUTE format('GRANT INSERT ON ai._vectorizer_errors TO %I', to_user);
            EXECUTE format('GRANT EXECUTE ON FUNCTION ai._vectorizer_register(name, regclass, text, jsonb, name, name), '
                           'ai._vectorizer_unregister(int4, bool), ai._vectorizer_set_disabled(int4, bool) TO %I', to_user);
        END IF;
    END IF;
    EXECUTE format('GRANT EXECUTE ON FUNCTION ai._vectorizer_record_success(int4, int8), '
                   'ai._vectorizer_record_error(int4, text, jsonb), ai._vectorizer_report(int4, int8, text), '
                   'ai._vectorizer_backfill_set(int4, jsonb), ai._vectorizer_backfill_after(int4, bool) TO %I', to_user);
END $$;
COMMENT ON FUNCTION ai.grant_vectorizer_usage(name, bool) IS 'Let a role use vectorizers (run workers, read status) and create them on its own tables; with admin, on any table it may trigger, and run them in the server';

-- Functions that act with the extension owner's rights, or run the server's Python: only for
-- superusers unless granted above.
REVOKE ALL ON FUNCTION ai._vectorizer_register(name, regclass, text, jsonb, name, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_unregister(int4, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_set_disabled(int4, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_drop_objects(ai.vectorizer, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_handle_drops() FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_handle_alters() FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_handle_ddl_start() FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_handle_drop_end() FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_detach_views(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_queue_missing_as_owner(ai.vectorizer) FROM PUBLIC;
-- Worker-facing reports: SECURITY DEFINER, each checking the caller (see 050_manage.sql).
REVOKE ALL ON FUNCTION ai._vectorizer_record_success(int4, int8) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_record_error(int4, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_report(int4, int8, text) FROM PUBLIC;
-- A backfill: moved on by a vectorizer's claims (its owner, a usage role), read by them and by
-- ai.vectorizer_queue_pending for usage roles (for a grant_to role that is not one, it counts
-- the queue alone: an owner may not grant what it holds without grant option).
REVOKE ALL ON FUNCTION ai._vectorizer_backfill_set(int4, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_backfill_after(int4, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.python_info() FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._check_python_regex(text) FROM PUBLIC;
-- Running the pipeline loads models into the backend and calls providers with the server's
-- API keys: admins only. An embedding config could send the server's key to any base_url.
REVOKE ALL ON FUNCTION ai.execute_vectorizer(int4, int8, float8) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.execute_vectorizer(text, int8, float8) FROM PUBLIC;
REVOKE ALL ON PROCEDURE ai._vectorizer_job(int4) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.embed(jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.openai_embed(text, text, text, text, int4, text, jsonb, jsonb, bool, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.ollama_embed(text, text, text, text, jsonb, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.voyageai_embed(text, text, text, text, text, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.cohere_embed(text, text, text, text, text, text, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.litellm_embed(text, text, text, text, jsonb, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_index_job(int4) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_schedule(ai.vectorizer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_unschedule(int4) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_set_job_active(int4, bool) FROM PUBLIC;

-- A row in ai._vectorizer_errors only for a vectorizer its writer may use (current_user: the
-- reporting functions write as the extension's owner after their own check; a vectorizer's
-- trigger writes as its owner).
CREATE FUNCTION ai._vectorizer_errors_check() RETURNS trigger
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT ai._vectorizer_may_use(NEW.id) THEN
        RAISE EXCEPTION 'role % may not record errors for vectorizer %', current_user, NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER _vectorizer_errors_check BEFORE INSERT OR UPDATE ON ai._vectorizer_errors
    FOR EACH ROW EXECUTE FUNCTION ai._vectorizer_errors_check();
