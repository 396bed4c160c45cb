-- The Python package for PL/Python lives in its own directory (make install-python), and its
-- third-party packages in another (make install-python-deps); both go on sys.path here. The
-- paths are fixed at build time on purpose: a settable path would let any role choose which
-- code the server imports.

-- Run once per backend by every PL/Python function before it imports the package: puts the
-- directories on sys.path and says exactly what is missing, and how to install it.
CREATE FUNCTION ai._python_setup() RETURNS void
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
import importlib.util
import sys

target, deps = "@PYTHON_TARGET@", "@PYTHON_DEPS@"
for path in (deps, target):  # the package first, then its dependencies
    if path not in sys.path:
        sys.path.insert(0, path)
try:
    import pgvectorizer
except ImportError as exc:
    plpy.error(
        "the pgvectorizer Python package is not installed for the server's Python",
        detail="import failed: %s; looked in %s" % (exc, target),
        hint="Run 'make install-python' (or 'make setup') as root on the database server.",
        sqlstate="55000",
    )
missing = [pip for module, pip in (("numpy", "numpy"), ("psycopg", "psycopg[binary]"),
                                   ("httpx", "httpx"))
           if importlib.util.find_spec(module) is None]
if missing:
    plpy.error(
        "Python packages that pgvectorizer needs are not installed for the server's Python: "
        + ", ".join(missing),
        detail="looked in %s and the site-packages of %s/bin/python%d.%d" % (
            deps, sys.base_exec_prefix, *sys.version_info[:2]),
        hint="Run 'make install-python-deps' (or 'make setup') as root on the database server, "
             "or: python3 -m pip install --target %s %s" % (deps, " ".join(missing)),
        sqlstate="55000",
    )
from pgvectorizer.indb import api
api.TARGET, api.DEPS = target, deps
$$;
COMMENT ON FUNCTION ai._python_setup() IS 'Put the server''s pgvectorizer package on sys.path, or say what to install';

CREATE FUNCTION ai.python_info() RETURNS jsonb
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
import json
import sys

plpy.execute("SELECT ai._python_setup()")
import pgvectorizer
return json.dumps({
    "package_version": pgvectorizer.__version__,
    "package_path": pgvectorizer.__file__,
    "python_version": "%d.%d.%d" % sys.version_info[:3],
    # sys.executable is empty in an embedded interpreter: the one whose library PL/Python loads.
    "python_executable": "%s/bin/python%d.%d" % (sys.base_exec_prefix, *sys.version_info[:2]),
})
$$;
COMMENT ON FUNCTION ai.python_info() IS 'The Python package the server would run: its version and path, or an error naming what to install';
