"""Names and limits that several parts share, in a module that imports nothing heavy (the
CLI reads them for --help before pydantic, torch or psycopg are loaded)."""

from __future__ import annotations

import re
from datetime import timedelta

# The worker's database and pause between rounds when not told otherwise (the CLI and
# pgvectorizer.worker.Worker).
DEFAULT_DB_URL = "postgres://postgres@localhost:5432/postgres"
DEFAULT_POLL_INTERVAL = timedelta(minutes=5)

# The local model of the embedders, the queue service and the GPU worker when none is named.
LOCAL_MODEL = "all-MiniLM-L6-v2"
# Where a local model may run.
DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
# The GPU worker's backends.
GPU_BACKENDS = ("sentence-transformers", "ollama")

# Limits of one GPU worker's claim, as the queue service takes it.
MAX_CLAIM_TASKS = 1024
MAX_CLAIM_TEXTS = 65_536
MAX_CLAIM_WAIT = 60.0  # seconds a claim may be held open waiting for work
# What a GPU worker asks for when not told otherwise.
CLAIM_TASKS = 64  # tasks per claim
CLAIM_TEXTS = 4096  # texts per claim (a claim always takes at least one task)
CLAIM_WAIT = 20.0  # seconds the service may hold a claim open waiting for work
GPU_POLL_INTERVAL = 2.0  # seconds: pause after an empty claim with wait 0; first backoff
