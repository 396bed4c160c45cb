"""The GPU workers' routes (WORKER_TOKEN): POST /worker/claim, /worker/heartbeat and
/worker/results. Each route only reads the request, asks core.Service and answers."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from pgvectorizer.service import protocol
from pgvectorizer.service.auth import WORKER, Tokens
from pgvectorizer.service.bodies import JSON, parse
from pgvectorizer.service.core import Service

# A worker's results carry vectors: 64 tasks of 100 texts at 1024 dimensions are 35 MB.
MAX_RESULTS_BODY = 256 * 1024 * 1024  # bytes
MAX_WORKER_BODY = 1024 * 1024  # bytes of a claim or heartbeat: ids and names only


def add_worker_routes(app: FastAPI, service: Service, tokens: Tokens) -> None:
    settings = service.settings

    @app.post("/worker/claim")
    async def claim(request: Request) -> Response:
        tokens.authorize(request, WORKER)
        body = await parse(request, protocol.ClaimRequest, MAX_WORKER_BODY)
        tasks = await service.claim(body, request.is_disconnected)
        answer = protocol.ClaimResponse(lease_seconds=settings.lease_seconds, tasks=[
            protocol.ClaimedTask(id=t.id, model=t.model, input=t.inputs, dimensions=t.dimensions,
                                 attempt=t.attempts) for t in tasks])
        return Response(answer.model_dump_json(), media_type=JSON)

    @app.post("/worker/heartbeat")
    async def heartbeat(request: Request) -> Response:
        tokens.authorize(request, WORKER)
        body = await parse(request, protocol.HeartbeatRequest, MAX_WORKER_BODY)
        answer = protocol.HeartbeatResponse(lease_seconds=settings.lease_seconds,
                                            held=await service.heartbeat(body))
        return Response(answer.model_dump_json(), media_type=JSON)

    @app.post("/worker/results")
    async def results(request: Request) -> Response:
        tokens.authorize(request, WORKER)
        body = await parse(request, protocol.ResultsRequest, MAX_RESULTS_BODY)
        return Response((await service.finish(body)).model_dump_json(), media_type=JSON)
