"""The HTTP API (FastAPI): thin routes over core.Service.

Clients (AUTH_TOKEN): POST /v1/embeddings, GET /tasks/{id}, GET /tasks/{id}/result,
DELETE /tasks/{id} (each task route also under /v1), GET /metrics.
Workers (WORKER_TOKEN): POST /worker/claim, /worker/heartbeat, /worker/results.
Open: GET /health.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgvectorizer import __version__
from pgvectorizer.service import protocol
from pgvectorizer.service.auth import CLIENT, WORKER, Tokens
from pgvectorizer.service.core import Service
from pgvectorizer.service.errors import SERVER_ERROR, ApiError
from pgvectorizer.service.responses import (
    embeddings_json,
    pending_json,
    task_json,
    task_path,
)
from pgvectorizer.service.settings import ServiceSettings
from pgvectorizer.service.store import (
    CANCELLED,
    CANCELLED_KIND,
    COMPLETED,
    EXPIRED,
    FAILED,
    INPUT,
    Task,
    TaskStore,
    parse_task_id,
)

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# A worker's results carry vectors: 64 tasks of 100 texts at 1024 dimensions are 35 MB.
MAX_RESULTS_BODY = 256 * 1024 * 1024  # bytes
MAX_WORKER_BODY = 1024 * 1024  # bytes of a claim or heartbeat: ids and names only
# Bodies and answers past this size are parsed and built in a thread, so that one large one
# does not hold up every long poll, claim and heartbeat of the process.
THREAD_BYTES = 256 * 1024
JSON = "application/json"
# Seconds a client should pause before sending a request again that was not answered in time:
# short, since the request has waited SYNC_WAIT_SECONDS already (the OpenAI SDK honours up to 60).
RETRY_AFTER = 1

def make_store(settings: ServiceSettings) -> TaskStore:
    if settings.database_url:
        from pgvectorizer.service.store_pg import PostgresTaskStore
        return PostgresTaskStore(settings.database_url)
    from pgvectorizer.service.store_sqlite import SqliteTaskStore
    return SqliteTaskStore(settings.db_path)

def create_app(settings: ServiceSettings, store: TaskStore | None = None) -> FastAPI:
    service = Service(settings, store or make_store(settings))
    tokens = Tokens(settings.auth_token, settings.worker_token)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="pgvectorizer embedding queue", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.add_middleware(_CountRequests, metrics=service.metrics.requests)
    _add_error_handlers(app)

    def authorize(request: Request, role: str) -> None:
        tokens.check(request.headers.get("authorization"), role)

    # --- clients ----------------------------------------------------------------------------

    @app.post("/v1/embeddings")
    @app.post("/embeddings", include_in_schema=False)
    async def create_embeddings(request: Request) -> Response:
        authorize(request, CLIENT)
        body = await _parse(request, protocol.EmbeddingRequest, settings.max_request_bytes)
        prefer = protocol.parse_prefer(request.headers.getlist("prefer"))
        task_id = await service.submit(body)
        if body.wait_seconds is None and not prefer.respond_async:
            # A client that did not ask for the task protocol (the OpenAI SDK) cannot read a
            # 202: it gets its vectors, or an error that it retries with a request of its own.
            final = await service.wait_or_cancel(task_id, settings.sync_wait)
            if final is None:
                raise _not_ready(task_id, settings.sync_wait)
            return await _final(final)
        asked = body.wait_seconds if body.wait_seconds is not None else prefer.wait
        wait = service.wait_seconds(asked)
        task = await service.wait_for(task_id, wait) if wait > 0 else None
        if task is None or task.status not in (COMPLETED, FAILED):
            return _accepted(task_id, task.status if task else "pending",
                             applied=prefer.respond_async)
        return await _final(task)

    async def task_or_404(request: Request, task_id: str, *, may_wait: bool = True) -> Task:
        authorize(request, CLIENT)
        wait = _query_wait(request, service) if may_wait else 0.0
        task = await service.wait_for(_task_id(task_id), wait)
        if task is None:
            raise ApiError(404, f"No task {task_id}: it never existed or its result expired "
                           f"(results are kept {settings.result_retention:g} s)",
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
        if task.status not in (COMPLETED, FAILED):
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
        return Response(json.dumps({"id": task.id, "status": FAILED, "error": CANCELLED}),
                        media_type=JSON)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        authorize(request, CLIENT)
        return PlainTextResponse(await service.metrics_text(),
                                 media_type="text/plain; version=0.0.4")

    @app.get("/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    # --- workers ----------------------------------------------------------------------------

    @app.post("/worker/claim")
    async def claim(request: Request) -> Response:
        authorize(request, WORKER)
        body = await _parse(request, protocol.ClaimRequest, MAX_WORKER_BODY)
        tasks = await service.claim(body, request.is_disconnected)
        answer = protocol.ClaimResponse(lease_seconds=settings.lease_seconds, tasks=[
            protocol.ClaimedTask(id=t.id, model=t.model, input=t.inputs, dimensions=t.dimensions,
                                 attempt=t.attempts) for t in tasks])
        return Response(answer.model_dump_json(), media_type=JSON)

    @app.post("/worker/heartbeat")
    async def heartbeat(request: Request) -> Response:
        authorize(request, WORKER)
        body = await _parse(request, protocol.HeartbeatRequest, MAX_WORKER_BODY)
        answer = protocol.HeartbeatResponse(lease_seconds=settings.lease_seconds,
                                            held=await service.heartbeat(body))
        return Response(answer.model_dump_json(), media_type=JSON)

    @app.post("/worker/results")
    async def results(request: Request) -> Response:
        authorize(request, WORKER)
        body = await _parse(request, protocol.ResultsRequest, MAX_RESULTS_BODY)
        return Response((await service.finish(body)).model_dump_json(), media_type=JSON)

    return app

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

async def _final(task: Task) -> Response:
    if task.status == COMPLETED:
        return Response(await _in_thread_if_large(embeddings_json, task), media_type=JSON)
    message = f"Embedding task {task.id} failed: {task.error}"
    if task.error_kind == CANCELLED_KIND:
        raise ApiError(409, f"Task {task.id} was cancelled by its client", code="task_cancelled")
    if task.error_kind == INPUT:
        # The input cannot be embedded: sending it again would fail again.
        raise ApiError(400, message, code="task_failed")
    if task.error_kind == EXPIRED:
        raise ApiError(503, message, type=SERVER_ERROR, code="no_worker")
    raise ApiError(500, message, type=SERVER_ERROR, code="task_failed")


async def _in_thread_if_large(build: Callable[[Task], str], task: Task) -> str:
    # A float answer for 2,048 vectors of 1,024 dimensions takes 0.4-0.5 s here.
    if task.result is not None and len(task.result) > THREAD_BYTES:
        return await asyncio.to_thread(build, task)
    return build(task)


def _task_id(text: str) -> str:
    task_id = parse_task_id(text)
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

async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, f"The request body is larger than this service takes "
                         f"({limit} bytes; MAX_REQUEST_BYTES)", code="request_too_large")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)

async def _parse(request: Request, model: type[M], limit: int) -> M:
    raw = await _read_body(request, limit)
    if len(raw) > THREAD_BYTES:
        return await asyncio.to_thread(_validate, raw, model)
    return _validate(raw, model)


def _validate(raw: bytes, model: type[M]) -> M:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting thousands deep
        raise ApiError(400, f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc.errors()) from None

def _validation_error(errors: Any) -> ApiError:
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    where = f"'{param}'" if param else "The request"
    message = f"{where}: {first.get('msg', 'is invalid')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return ApiError(400, message, param=param)

def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _validation_error(exc.errors()).response()

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return ApiError(exc.status_code, str(exc.detail),
                        headers=dict(exc.headers or {})).response()

    async def unexpected(_: Request, exc: Exception) -> Response:
        # Still in OpenAI's shape, so clients show a message rather than a parse error.
        logger.error("unexpected error", exc_info=exc)
        return ApiError(500, f"Internal error ({type(exc).__name__}); see the service's log",
                        type=SERVER_ERROR).response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)

class _CountRequests:
    """Counts answers by route template and status (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.metrics[(route, status)] += 1
