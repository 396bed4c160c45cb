"""The worker's side of the database: psycopg adapters of the queue core and the catalog.

With the service's PostgreSQL task store (service/store_pg.py), the only code that imports
psycopg; the layers above see its connection and errors through db/connection.py.
"""

from __future__ import annotations
