-- Privileges. A new role sees nothing of schema ai until granted: users of vectorizers (a
-- worker, a reader of the status) get usage; admins may also create and drop vectorizers.

CREATE FUNCTION ai.grant_vectorizer_usage(to_user name, admin bool DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = to_user) THEN
        RAISE EXCEPTION 'grant_vectorizer_usage: role "%" does not exist', to_user USING ERRCODE = 'undefined_object';
    END IF;
    IF admin THEN
        -- Queue tables and trigger functions are created in schema ai.
        EXECUTE format('GRANT USAGE, CREATE ON SCHEMA ai TO %I WITH GRANT OPTION', to_user);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ai.vectorizer, ai._vectorizer_errors, '
                       'ai._vectorizer_worker_progress TO %I WITH GRANT OPTION', to_user);
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE ai.vectorizer_id_seq TO %I WITH GRANT OPTION', to_user);
        EXECUTE format('GRANT SELECT ON ai.vectorizer_status, ai.vectorizer_errors TO %I WITH GRANT OPTION', to_user);
    ELSE
        EXECUTE format('GRANT USAGE ON SCHEMA ai TO %I', to_user);
        EXECUTE format('GRANT SELECT ON ai.vectorizer, ai.vectorizer_status, ai.vectorizer_errors TO %I', to_user);
        EXECUTE format('GRANT SELECT, INSERT ON ai._vectorizer_errors TO %I', to_user);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON ai._vectorizer_worker_progress TO %I', to_user);
    END IF;
END $$;
COMMENT ON FUNCTION ai.grant_vectorizer_usage(name, bool) IS 'Let a role use vectorizers (run workers, read status); with admin, also create and drop them';

-- PL/Python runs as the server: only superusers, unless granted.
REVOKE ALL ON FUNCTION ai.python_info() FROM PUBLIC;
