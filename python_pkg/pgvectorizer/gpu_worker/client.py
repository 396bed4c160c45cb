"""The worker's side of the service's task protocol: POST /worker/claim, /worker/heartbeat and
/worker/results over one async httpx connection pool.

A service that cannot be reached (connection errors, timeouts, 5xx, 408, 429) is waited for:
claims and results are sent again with exponential backoff until they get through, since a
claim costs nothing to repeat and a result must never be lost (the service takes a late one as
long as the task is not final). Each outage is logged once when it starts and once when it
ends. Any other 4xx means the request itself is wrong and is raised as errors.ServiceRefusal;
401 and 403 as errors.ServiceAuthError.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from pgvectorizer.errors import ServiceAuthError, ServiceRefusal
from pgvectorizer.service.protocol import (
    ClaimRequest,
    ClaimResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    ResultsRequest,
    ResultsResponse,
    TaskError,
)

logger = logging.getLogger(__name__)

MAX_BACKOFF = 60.0  # seconds: the longest pause between tries while the service is away
JITTER = 0.25  # each pause is stretched or shrunk by up to this fraction, so that workers
#                behind one NAT do not all come back in the same instant after an outage
TIMEOUT_MARGIN = 30.0  # seconds a request may take beyond the claim's long-poll wait
CONNECT_TIMEOUT = 10.0  # seconds to open a connection
TRANSIENT_STATUS = frozenset({408, 429})  # besides 5xx: worth sending again later

Sleep = Callable[[float], Awaitable[None]]
M = TypeVar("M", bound=BaseModel)  # the model of an answer


class ServiceUnavailable(Exception):
    """One try at the service failed in a way worth trying again later (heartbeats only)."""


def base_url(url: str) -> str:
    """The service's root: `http://host:8000`, given with or without a trailing / or /v1."""
    root = url.strip().rstrip("/")
    if root.endswith("/v1"):
        root = root[:-3].rstrip("/")
    if not root.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return root


class ServiceClient:
    """Async client for the worker endpoints; use as `async with` or close with aclose()."""

    def __init__(self, server_url: str, token: str, *, wait_seconds: float,
                 poll_interval: float, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.base_url = base_url(server_url)
        self.poll_interval = poll_interval
        # A claim is held open up to wait_seconds by the service: only a silence well past
        # that means the connection is dead.
        timeout = httpx.Timeout(wait_seconds + TIMEOUT_MARGIN, connect=CONNECT_TIMEOUT)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                       transport=transport,
                                       headers={"Authorization": f"Bearer {token}"})
        self._sleep = sleep
        self._down_since: float | None = None  # monotonic time the current outage began

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def down(self) -> bool:
        """Whether the last request found the service away."""
        return self._down_since is not None

    async def claim(self, request: ClaimRequest) -> ClaimResponse:
        """Tasks for this worker (maybe none after the long-poll wait); waits out outages."""
        return await self._retrying("/worker/claim", request, ClaimResponse)

    async def heartbeat(self, request: HeartbeatRequest,
                        timeout: float | None = None) -> HeartbeatResponse:
        """One try, given up after `timeout` seconds if set: ServiceUnavailable when the
        service is away (the next beat tries again with the ids then held)."""
        return await self._post("/worker/heartbeat", request, HeartbeatResponse, timeout)

    async def results(self, request: ResultsRequest) -> ResultsResponse:
        """Posts results, errors and releases, trying until the service takes them.

        A body too large for the service (413) is sent in halves; a single result still too
        large becomes a non-retryable error, since no worker could post it.
        """
        try:
            return await self._retrying("/worker/results", request, ResultsResponse)
        except ServiceRefusal as exc:
            if exc.status != 413 or not request.results:
                raise
        parts = _halves(request)
        if parts is None:
            result = request.results[0]
            logger.error("task %s: its %d-dimensional vectors are more than the service takes "
                         "in one request", result.id, result.dimensions)
            return await self.results(ResultsRequest(worker_id=request.worker_id, errors=[
                TaskError(id=result.id, error=f"the result ({len(result.embeddings)} bytes of "
                          "base64) is larger than the service takes in one request",
                          retryable=False)]))
        first, second = [await self.results(part) for part in parts]
        return ResultsResponse(accepted=first.accepted + second.accepted,
                               ignored={**first.ignored, **second.ignored})

    async def post_once(self, request: ResultsRequest) -> ResultsResponse:
        """One try at posting (for giving tasks back on the way out); ServiceUnavailable."""
        return await self._post("/worker/results", request, ResultsResponse)

    async def _retrying(self, path: str, body: BaseModel, answer: type[M]) -> M:
        delay = self.poll_interval
        while True:
            try:
                return await self._post(path, body, answer)
            except ServiceUnavailable:
                pass
            pause = min(MAX_BACKOFF, delay * random.uniform(1 - JITTER, 1 + JITTER))
            logger.debug("POST %s: trying again in %.1f s", path, pause)
            await self._sleep(pause)
            delay = min(MAX_BACKOFF, delay * 2)

    async def _post(self, path: str, body: BaseModel, answer: type[M],
                    timeout: float | None = None) -> M:
        url = self.base_url + path
        limit = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)) \
            if timeout is not None else httpx.USE_CLIENT_DEFAULT
        try:
            response = await self._http.post(path, content=body.model_dump_json(),
                                             headers={"Content-Type": "application/json"},
                                             timeout=limit)
        except httpx.TransportError as exc:  # connection refused or reset, timeouts, DNS
            self._lost(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            raise ServiceUnavailable(url) from exc
        status = response.status_code
        if status >= 500 or status in TRANSIENT_STATUS:
            self._lost(f"{status} {_message(response)}")
            raise ServiceUnavailable(url)
        self._back()
        if status in (401, 403):
            what = ("is missing or wrong" if status == 401
                    else "is not allowed on the worker endpoints (is it the clients' AUTH_TOKEN?)")
            raise ServiceAuthError(f"the service at {self.base_url} refused the worker token: it "
                                   f"{what} ({status}: {_message(response)}); set --token or "
                                   "WORKER_TOKEN to the service's WORKER_TOKEN", status=status)
        if status >= 400:
            raise ServiceRefusal(f"the service at {self.base_url} refused POST {path} "
                                 f"({status}: {_message(response)})", status=status)
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as exc:
            raise ServiceRefusal(f"POST {url} answered {status} with a body that is not a "
                                 f"{answer.__name__} (is {self.base_url} the embedding queue "
                                 f"service?): {exc.errors()[0].get('msg')}",
                                 status=status) from None

    def _lost(self, why: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning("the service at %s is unreachable (%s); retrying with backoff up "
                           "to %g s", self.base_url, why, MAX_BACKOFF)
        else:
            logger.debug("the service at %s is still unreachable (%s)", self.base_url, why)

    def _back(self) -> None:
        if self._down_since is not None:
            logger.info("reconnected to the service at %s after %.1f s", self.base_url,
                        time.monotonic() - self._down_since)
            self._down_since = None


def _message(response: httpx.Response) -> str:
    # The service answers errors in OpenAI's shape; a proxy in front may answer anything.
    try:
        body = response.json()
        message = body["error"]["message"]
        if isinstance(message, str):
            return message
    except (ValueError, KeyError, TypeError):
        pass
    return response.text.strip()[:200] or response.reason_phrase


def _halves(request: ResultsRequest) -> tuple[ResultsRequest, ResultsRequest] | None:
    """The request in two parts, by its results (errors and releases are small); None when
    it holds a single result and nothing else."""
    results, worker = request.results, request.worker_id
    if len(results) >= 2:
        middle = len(results) // 2
        return (ResultsRequest(worker_id=worker, results=results[:middle],
                               errors=request.errors, released=request.released),
                ResultsRequest(worker_id=worker, results=results[middle:]))
    if request.errors or request.released:
        return (ResultsRequest(worker_id=worker, results=results),
                ResultsRequest(worker_id=worker, errors=request.errors,
                               released=request.released))
    return None
