"""Bearer tokens: clients hold AUTH_TOKEN, GPU workers WORKER_TOKEN (the same by default).

Tokens are compared with hmac.compare_digest, whose time does not depend on where the first
difference lies, so response times leak nothing of the token. Both tokens are always compared,
so the answer's time does not tell which one a guess was close to either.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from pgvectorizer.service.errors import ApiError

CLIENT = "client"
WORKER = "worker"

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="pgvectorizer"'}


class Tokens:
    def __init__(self, client_token: str, worker_token: str) -> None:
        self._client = client_token.encode()
        self._worker = worker_token.encode()

    def authorize(self, request: Request, role: str) -> None:
        """Returns when the request carries the role's token; ApiError otherwise."""
        self.check(request.headers.get("authorization"), role)

    def check(self, authorization: str | None, role: str) -> None:
        """Returns when the header carries the role's token; ApiError 401 or 403 otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Missing bearer token: send the header "
                           "'Authorization: Bearer <token>'", code="invalid_api_key",
                           headers=_CHALLENGE)
        given = token.strip().encode()
        is_client = hmac.compare_digest(given, self._client)
        is_worker = hmac.compare_digest(given, self._worker)
        if (is_client and role == CLIENT) or (is_worker and role == WORKER):
            return
        if is_client or is_worker:
            other = "GPU workers (WORKER_TOKEN)" if role == WORKER else "clients (AUTH_TOKEN)"
            raise ApiError(403, f"This token is not allowed here: this endpoint is for {other}",
                           code="forbidden")
        raise ApiError(401, "Incorrect bearer token", code="invalid_api_key",
                       headers=_CHALLENGE)
