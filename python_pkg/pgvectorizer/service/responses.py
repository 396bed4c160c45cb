"""Response bodies built from a task: OpenAI's embeddings list, and the task's status.

The JSON is put together as text around the vectors: pgvector's text form of a float32 vector
is a JSON array already (nine significant digits, exact), and base64 is a slice of the stored
bytes, so no float passes through json.dumps.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from pgvectorizer.service.store import Task
from pgvectorizer.vectors import vector_text


def embeddings_json(task: Task) -> str:
    """OpenAI's {"object": "list", "data": [...], "model", "usage"} for a completed task."""
    assert task.result is not None and task.result_dimensions is not None
    rows = np.frombuffer(task.result, dtype="<f4").reshape(-1, task.result_dimensions)
    if task.encoding_format == "base64":
        vectors = ['"' + base64.b64encode(row.tobytes()).decode("ascii") + '"' for row in rows]
    else:
        vectors = [vector_text(row) for row in rows]
    data = ",".join(f'{{"object":"embedding","index":{i},"embedding":{v}}}'
                    for i, v in enumerate(vectors))
    usage = json.dumps({"prompt_tokens": task.tokens, "total_tokens": task.tokens})
    return (f'{{"object":"list","data":[{data}],"model":{json.dumps(task.model)},'
            f'"usage":{usage}}}')


def task_json(task: Task) -> str:
    """GET /tasks/{id}: the status, times, error, and the embeddings once completed."""
    meta: dict[str, Any] = {
        "id": task.id, "object": "embedding.task", "status": task.status, "model": task.model,
        "inputs": len(task.inputs), "attempts": task.attempts, "created_at": task.created_at,
        "finished_at": task.finished_at, "error": task.error,
    }
    text = json.dumps(meta)
    result = embeddings_json(task) if task.result is not None else "null"
    return text[:-1] + f',"result":{result}}}'


def task_path(task_id: str) -> str:
    """Where a task's status is read (also under /v1)."""
    return f"/tasks/{task_id}"


def pending_json(task_id: str, status: str) -> str:
    """What a long poll answers when the result is not ready: where to ask again."""
    return json.dumps({"id": task_id, "object": "embedding.task", "status": status,
                       "url": task_path(task_id)})
