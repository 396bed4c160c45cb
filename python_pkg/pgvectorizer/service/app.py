"""The HTTP API (FastAPI): the app, made of its store, its background work and its routes.

Clients (AUTH_TOKEN): POST /v1/embeddings, GET /tasks/{id}, GET /tasks/{id}/result,
DELETE /tasks/{id} (each task route also under /v1), GET /metrics (routes_clients).
Workers (WORKER_TOKEN): POST /worker/claim, /worker/heartbeat, /worker/results
(routes_workers). Open: GET /health.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgvectorizer import __version__
from pgvectorizer.service.auth import Tokens
from pgvectorizer.service.bodies import validation_error
from pgvectorizer.service.core import Service
from pgvectorizer.service.errors import SERVER_ERROR, ApiError
from pgvectorizer.service.routes_clients import (
    add_embedding_routes,
    add_status_routes,
    add_task_routes,
)
from pgvectorizer.service.routes_workers import add_worker_routes
from pgvectorizer.service.settings import ServiceSettings
from pgvectorizer.service.store import TaskStore

logger = logging.getLogger(__name__)


def make_store(settings: ServiceSettings) -> TaskStore:
    # Imported on use: a service on SQLite never loads psycopg and its pool.
    if settings.database_url:
        from pgvectorizer.service.store_pg import PostgresTaskStore
        return PostgresTaskStore(settings.database_url)
    from pgvectorizer.service.store_sqlite import SqliteTaskStore
    return SqliteTaskStore(settings.db_path)


def create_app(settings: ServiceSettings, store: TaskStore | None = None) -> FastAPI:
    service = Service(settings, store or make_store(settings))
    app = FastAPI(title="pgvectorizer embedding queue", version=__version__,
                  lifespan=_background(service), docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.service = service
    app.add_middleware(_CountRequests, metrics=service.metrics.requests)
    _add_error_handlers(app)
    tokens = Tokens(settings.auth_token, settings.worker_token)
    add_embedding_routes(app, service, tokens)
    add_task_routes(app, service, tokens)
    add_status_routes(app, service, tokens)
    add_worker_routes(app, service, tokens)
    return app


def _background(service: Service) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the service opens its store and starts its background work
    (expiring and deleting tasks) before the first request, and stops them after the last."""
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()
    return lifespan


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_error(exc.errors()).response()

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
