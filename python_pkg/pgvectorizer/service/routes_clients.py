"""The clients' routes (AUTH_TOKEN): POST /v1/embeddings, GET /tasks/{id},
GET /tasks/{id}/result, DELETE /tasks/{id} (each task route also under /v1), GET /metrics;
and the open GET /health. Each route only reads the request, asks core.Service and answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from pgvectorizer import __version__
from pgvectorizer.service import protocol, store
from pgvectorizer.service.auth import CLIENT, Tokens
from pgvectorizer.service.bodies import JSON, THREAD_BYTES, parse
from pgvectorizer.service.core import Service
from pgvectorizer.service.errors import SERVER_ERROR, ApiError
from pgvectorizer.service.responses import (
    embeddings_json,
    pending_json,
    task_json,
    task_path,
)

# Seconds a client should pause before sending a request again that was not answered in time:
# short, since the request has waited SYNC_WAIT_SECONDS already (the OpenAI SDK honours up to 60).
RETRY_AFTER = 1


def add_embedding_routes(app: FastAPI, service: Service, tokens: Tokens) -> None:
    settings = service.settings

    @app.post("/v1/embeddings")
    @app.post("/embeddings", include_in_schema=False)
    async def create_embeddings(request: Request) -> Response:
        tokens.authorize(request, CLIENT)
        body = await parse(request, protocol.EmbeddingRequest, settings.max_request_bytes)
        prefer = protocol.parse_prefer(request.headers.getlist("prefer"))
        if body.wait_seconds is None and not prefer.respond_async:
            # A client that did not ask for the task protocol (the OpenAI SDK) cannot read a
            # 202: it gets its vectors, or an error that it retries with a request of its own.
            task_id, final = await service.submit_and_wait(body, settings.sync_wait,
                                                           cancel_late=True)
            if final is None:
                raise _not_ready(task_id, settings.sync_wait)
            return await _final(final)
        asked = body.wait_seconds if body.wait_seconds is not None else prefer.wait
        task_id, task = await service.submit_and_wait(body, service.wait_seconds(asked))
        if task is None or task.status not in store.FINAL:
            return _accepted(task_id, task.status if task else "pending",
                             applied=prefer.respond_async)
        return await _final(task)


def add_task_routes(app: FastAPI, service: Service, tokens: Tokens) -> None:
    async def task_or_404(request: Request, task_id: str, *,
                          may_wait: bool = True) -> store.Task:
        tokens.authorize(request, CLIENT)
        wait = _query_wait(request, service) if may_wait else 0.0
        task = await service.wait_for(_task_id(task_id), wait)
        if task is None:
            raise ApiError(404, f"No task {task_id}: it never existed or its result expired "
                           f"(results are kept {service.settings.result_retention:g} s)",
                           code="task_not_found")
        return task

    @app.get("/tasks/{task_id}")
    @app.get("/v1/tasks/{task_id}", include_in_schema=False)
    async def get_task(request: Request, task_id: str) -> Response:
        task = await task_or_404(request, task_id)
        return Response(await _in_thread_if_large(task_json, task), media_type=JSON)

    @app.get("/tasks/{task_id}/result")
    @app.get("/v1/tasks/{task_id}/result", include_in_schema=False)
    async def get_result(request: Request, task_id: str) -> Response:
        task = await task_or_404(request, task_id)
        if task.status not in store.FINAL:
            return _accepted(task.id, task.status)
        return await _final(task)

    @app.delete("/tasks/{task_id}")
    @app.delete("/v1/tasks/{task_id}", include_in_schema=False)
    async def cancel_task(request: Request, task_id: str) -> Response:
        task = await task_or_404(request, task_id, may_wait=False)
        if not await service.cancel(task.id):
            now = await service.store.get(task.id)
            status = now.status if now else "gone"
            raise ApiError(409, f"Task {task.id} is {status} already", code="task_final")
        return Response(json.dumps({"id": task.id, "status": store.FAILED,
                                    "error": store.CANCELLED}), media_type=JSON)


def add_status_routes(app: FastAPI, service: Service, tokens: Tokens) -> None:
    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        tokens.authorize(request, CLIENT)
        return PlainTextResponse(await service.metrics_text(),
                                 media_type="text/plain; version=0.0.4")

    @app.get("/health")  # open: for load balancers and orchestrators, which hold no token
    async def health() -> Response:
        return JSONResponse({"status": "ok", "version": __version__})


def _accepted(task_id: str, status: str, *, applied: bool = False) -> Response:
    # 202: accepted, not done; only for clients that asked for it (wait_seconds, or Prefer),
    # which read the id and ask again. OpenAI's SDK would take it for an empty success.
    headers = {"Location": task_path(task_id)}
    if applied:
        headers["Preference-Applied"] = "respond-async"
    return Response(pending_json(task_id, status), status_code=202, media_type=JSON,
                    headers=headers)


def _not_ready(task_id: str, waited: float) -> ApiError:
    """503 for a request without the task protocol whose vectors did not come in time: a
    status the OpenAI SDK retries (as any 5xx; x-should-retry says so outright)."""
    return ApiError(503, f"The vectors were not ready within {waited:g} s (SYNC_WAIT_SECONDS), "
                    f"so task {task_id} was cancelled; send the request again, or send "
                    "'Prefer: respond-async' to get a task to follow instead",
                    type=SERVER_ERROR, code="not_ready",
                    headers={"Retry-After": str(RETRY_AFTER), "x-should-retry": "true"})


async def _final(task: store.Task) -> Response:
    if task.status == store.COMPLETED:
        return Response(await _in_thread_if_large(embeddings_json, task), media_type=JSON)
    message = f"Embedding task {task.id} failed: {task.error}"
    if task.error_kind == store.CANCELLED_KIND:
        raise ApiError(409, f"Task {task.id} was cancelled by its client", code="task_cancelled")
    if task.error_kind == store.INPUT:
        # The input cannot be embedded: sending it again would fail again.
        raise ApiError(400, message, code="task_failed")
    if task.error_kind == store.EXPIRED:
        raise ApiError(503, message, type=SERVER_ERROR, code="no_worker")
    raise ApiError(500, message, type=SERVER_ERROR, code="task_failed")


async def _in_thread_if_large(build: Callable[[store.Task], str], task: store.Task) -> str:
    # A float answer for 2,048 vectors of 1,024 dimensions takes 0.4-0.5 s here.
    if task.result is not None and len(task.result) > THREAD_BYTES:
        return await asyncio.to_thread(build, task)
    return build(task)


def _task_id(text: str) -> str:
    task_id = store.parse_task_id(text)
    if task_id is None:
        raise ApiError(404, f"No task {text!r}: task ids are UUIDs", code="task_not_found")
    return task_id


def _query_wait(request: Request, service: Service) -> float:
    raw = request.query_params.get("wait_seconds")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ApiError(400, f"wait_seconds={raw!r} is not a number of seconds >= 0",
                       param="wait_seconds")
    return service.wait_seconds(value)
