"""Request bodies: read within a size limit, parsed as JSON and checked against a model, with
the first problem said in OpenAI's error shape."""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from pgvectorizer.service.errors import ApiError

M = TypeVar("M", bound=BaseModel)

# Bodies and answers past this size are parsed and built in a thread, so that one large one
# does not hold up every long poll, claim and heartbeat of the process.
THREAD_BYTES = 256 * 1024
JSON = "application/json"


async def parse(request: Request, model: type[M], limit: int) -> M:
    raw = await _read(request, limit)
    if len(raw) > THREAD_BYTES:
        return await asyncio.to_thread(_validate, raw, model)
    return _validate(raw, model)


async def _read(request: Request, limit: int) -> bytes:
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
        raise validation_error(exc.errors()) from None


def validation_error(errors: Any) -> ApiError:
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    where = f"'{param}'" if param else "The request"
    message = f"{where}: {first.get('msg', 'is invalid')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return ApiError(400, message, param=param)
