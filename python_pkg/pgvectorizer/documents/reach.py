"""Which http(s) URIs the worker fetches documents from: public addresses only, by default.

A vectorizer's URIs are written by whoever may create vectorizers (with
ai.grant_vectorizer_usage, any role on its own tables), but the worker fetches them from its
own network position and the answer lands in a store that role reads. Without a rule, a URI
such as http://169.254.169.254/latest/meta-data/ (a cloud's instance credentials) or
http://localhost:5432/ would reach what only the worker's host can reach. So a URI whose host
resolves to a loopback, private, link-local, shared, reserved or multicast address is refused
unless the operator lists it in PGVECTORIZER_LOAD_PRIVATE_URLS (URLs separated by whitespace,
`,` or `;`, matched as in endpoints.py, e.g. http://intranet.example:* or http://127.0.0.1:8080).
Each redirect hop is checked again. Inside PostgreSQL the stricter endpoint allow-list applies
instead (loading.py).

The address is checked when the URI is resolved here, and httpx resolves the name again to
connect: a DNS answer that changes in between (rebinding) is not caught. Listing no private
URLs and resolving through a resolver that pins answers closes that too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from ..endpoints import Endpoint, listed_endpoints
from . import DocumentError

PRIVATE_URLS_ENV = "PGVECTORIZER_LOAD_PRIVATE_URLS"


def private_urls(env: Mapping[str, str]) -> tuple[Endpoint, ...]:
    """PGVECTORIZER_LOAD_PRIVATE_URLS; ConfigError naming it when an entry is malformed."""
    return listed_endpoints(env, PRIVATE_URLS_ENV)


def check_public(uri: str, url: str, listed: Sequence[Endpoint]) -> None:
    """DocumentError("loading") when url's host is not a public address and not `listed`."""
    if any(endpoint.matches(url) for endpoint in listed):
        return
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise DocumentError("loading", f"{uri}: {url} names no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as e:  # ValueError: a port out of range
        raise DocumentError("loading", f"{uri}: {host} cannot be resolved: {e}",
                            transient=isinstance(e, socket.gaierror)) from None
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global:
            raise DocumentError(
                "loading", f"{uri}: {host} is at {address}, not a public address; the worker "
                f"fetches documents from such addresses only where {PRIVATE_URLS_ENV} lists the URL")
