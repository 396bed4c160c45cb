-- The Python package for PL/Python lives in its own directory (make install-python), and its
-- third-party packages in another (make install-python-deps). A .pth file in the server
-- Python's own site directory, written by root, puts both on sys.path: no path is in this
-- script (0.1.0 had them baked in at build time), and none is settable by a database role,
-- which would let it choose the code the server runs.

-- Run once per backend by every PL/Python function before it imports the package: says
-- exactly what is missing, and how to install it.
CREATE FUNCTION ai._python_setup() RETURNS void
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
import importlib.util
import sys

try:
    import pgvectorizer
except ImportError as exc:
    plpy.error(
        "the pgvectorizer Python package is not installed for the server's Python",
        detail="import failed: %s; sys.path: %s" % (exc, ", ".join(p for p in sys.path if p)),
        hint="Run 'make install-python' (or 'make setup') as root on the database server: it "
             "installs the package and names it in pgvectorizer.pth in that Python's site-packages.",
        sqlstate="55000",
    )
missing = [pip for module, pip in (("numpy", "numpy"), ("httpx", "httpx"))
           if importlib.util.find_spec(module) is None]
if missing:
    plpy.error(
        "Python packages that pgvectorizer needs are not installed for the server's Python: "
        + ", ".join(missing),
        detail="looked in %s" % ", ".join(p for p in sys.path if p),
        hint="Run 'make install-python-deps' (or 'make setup') as root on the database server.",
        sqlstate="55000",
    )
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
