-- Privileges. A new role sees nothing of schema ai until granted: users of vectorizers (a
-- worker, a reader of the status) get usage; admins may also create and drop vectorizers,
-- through the checked functions of 035_register.sql, never by writing the catalog.

CREATE FUNCTION ai.grant_vectorizer_usage(to_user name, admin bool DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = to_user) THEN
        RAISE EXCEPTION 'grant_vectorizer_usage: role "%" does not exist', to_user USING ERRCODE = 'undefined_object';
    END IF;
    IF admin THEN
        -- WITH GRANT OPTION: an admin passes these on through grant_to and to other roles.
        EXECUTE format('GRANT USAGE ON SCHEMA ai TO %I WITH GRANT OPTION', to_user);
        EXECUTE format('GRANT SELECT ON ai.vectorizer, ai.vectorizer_status, ai.vectorizer_errors, '
                       'ai._vectorizer_errors, ai._vectorizer_worker_progress TO %I WITH GRANT OPTION', to_user);
        EXECUTE format('GRANT INSERT ON ai._vectorizer_errors TO %I WITH GRANT OPTION', to_user);
        EXECUTE format('GRANT INSERT, UPDATE ON ai._vectorizer_worker_progress TO %I WITH GRANT OPTION', to_user);
        EXECUTE format('GRANT EXECUTE ON FUNCTION ai._vectorizer_register(name, regclass, text, jsonb, name, name), '
                       'ai._vectorizer_unregister(int4, bool), ai._vectorizer_set_disabled(int4, bool) TO %I', to_user);
    ELSE
        EXECUTE format('GRANT USAGE ON SCHEMA ai TO %I', to_user);
        EXECUTE format('GRANT SELECT ON ai.vectorizer, ai.vectorizer_status, ai.vectorizer_errors TO %I', to_user);
        EXECUTE format('GRANT SELECT, INSERT ON ai._vectorizer_errors TO %I', to_user);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON ai._vectorizer_worker_progress TO %I', to_user);
    END IF;
END $$;
COMMENT ON FUNCTION ai.grant_vectorizer_usage(name, bool) IS 'Let a role use vectorizers (run workers, read status); with admin, also create and drop them';

-- Functions that act with the extension owner's rights, or run the server's Python: only for
-- superusers unless granted above.
REVOKE ALL ON FUNCTION ai._vectorizer_register(name, regclass, text, jsonb, name, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_unregister(int4, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_set_disabled(int4, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_drop_objects(ai.vectorizer, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_handle_drops() FROM PUBLIC;
REVOKE ALL ON FUNCTION ai._vectorizer_handle_alters() FROM PUBLIC;
REVOKE ALL ON FUNCTION ai.python_info() FROM PUBLIC;
