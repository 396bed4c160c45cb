"""The queue core: the batch cycle over one vectorizer's queue, written once.

statements.py  every statement sent, in PostgreSQL's own $n form
steps.py       the operations' arguments and answers, as plain data
queue.py       VectorizerQueue over a Driver (db/driver.py: psycopg; indb/spi.py: SPI), and
               run_batch(): claim, read, embed, write, unlock
"""

from __future__ import annotations
