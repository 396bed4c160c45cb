-- The Python package for PL/Python lives in its own directory (make install-python), added to
-- sys.path here. The path is fixed at build time on purpose: a settable path would let any role
-- choose which code the server imports.

CREATE FUNCTION ai.python_info() RETURNS jsonb
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
import json
import sys

target = "@PYTHON_TARGET@"
if target not in sys.path:
    sys.path.insert(0, target)
try:
    import pgvectorizer
except ImportError as exc:
    plpy.error(
        "the pgvectorizer Python package is not installed for the server's Python",
        detail="import failed: %s; looked in %s" % (exc, target),
        hint="Run 'make install-python' (or 'make setup') as root on the database server.",
    )
return json.dumps({
    "package_version": pgvectorizer.__version__,
    "package_path": pgvectorizer.__file__,
    "python_version": "%d.%d.%d" % sys.version_info[:3],
    "python_executable": sys.executable,
})
$$;
COMMENT ON FUNCTION ai.python_info() IS 'The Python package the server would run: its version and path, or an error naming what to install';
