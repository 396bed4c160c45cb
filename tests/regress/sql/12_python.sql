-- PL/Python finds the package installed for the server's interpreter.
\set VERBOSITY terse
SELECT ai.python_info()->>'package_version' AS version,
       ai.python_info()->>'package_path' LIKE '/usr/local/lib/pgvectorizer/python/%' AS from_target,
       ai.python_info()->>'python_version' LIKE '3.%' AS python3;
