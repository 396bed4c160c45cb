"""Which environment variables may hold API keys, and where keys and server-side requests may go.

A vectorizer's embedding config is written by whoever may create vectorizers; the environment
belongs to whoever runs the worker or the database server. The config names a variable
(api_key_name) and a URL (base_url), so without a policy it could have any variable's value
sent anywhere, such as PGAI_VECTORIZER_WORKER_DB_URL as a bearer token to its author's server.
The operator decides, in the environment the embedders read (the worker's environment or
.env file; the PostgreSQL server's environment for in-database runs and ai.embed):

Reading keys
    A variable may be read as an API key only if its name ends in ``_API_KEY`` or
    PGVECTORIZER_KEY_ENDPOINTS lists it. Anything else is a ConfigError.

Sending keys
    A key named X goes only to its provider's default endpoint, and only when X is that
    provider's default key name (OPENAI_API_KEY to https://api.openai.com/v1), or to a URL
    that PGVECTORIZER_KEY_ENDPOINTS lists for X. Otherwise KeyEndpointRefused, which names the
    setting that would allow it. A variable that is unset or empty sends nothing.

    PGVECTORIZER_KEY_ENDPOINTS holds entries separated by whitespace or ``;``, each
    ``NAME=URL[,URL...]``, for example
    ``OPENAI_API_KEY=https://my-proxy.example/v1 QUEUE_API_KEY=http://queue:8000/v1``.

Server-side requests
    Requests made inside PostgreSQL go only to endpoints the operator allows: the provider's
    default endpoint, any URL in PGVECTORIZER_KEY_ENDPOINTS, or one in
    PGVECTORIZER_ALLOWED_ENDPOINTS (URLs separated by whitespace, ``,`` or ``;``). Ollama's
    default (OLLAMA_HOST, else http://localhost:11434) counts only when the config gives no
    base_url. Otherwise EndpointNotAllowed.

Matching
    A listed URL matches a base_url when scheme and host are equal (case-insensitive), the
    ports are equal (80 and 443 filled in; a listed port ``*`` matches any), and the listed
    path, trailing ``/`` ignored, is a prefix of the base_url's path at a segment boundary.
    The base_url is read as httpx will request it (dot segments resolved); one whose path
    hides a ``/`` or a dot segment in percent-encoding matches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import httpx

from .errors import ConfigError, EndpointNotAllowed, KeyEndpointRefused

KEY_SUFFIX = "_API_KEY"
KEY_ENDPOINTS_ENV = "PGVECTORIZER_KEY_ENDPOINTS"
ALLOWED_ENDPOINTS_ENV = "PGVECTORIZER_ALLOWED_ENDPOINTS"
DEFAULT_PORTS = {"http": 80, "https": 443}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WHERE = ("in the environment of the process that embeds (the worker's environment or .env "
          "file; for in-database runs and ai.embed, the PostgreSQL server's environment)")


@dataclass(frozen=True)
class Endpoint:
    """A URL that a setting lists, ready for matching."""

    scheme: str
    host: str  # lower case, IDNA-encoded
    port: int | None  # None: any port
    path: str  # without a trailing "/"; "" matches every path

    def matches(self, url: str) -> bool:
        """Whether base_url `url` is this endpoint or below it."""
        parts = _split(url)
        if parts is None:
            return False
        scheme, host, port, path = parts
        if (scheme, host) != (self.scheme, self.host):
            return False
        if self.port is not None and port != self.port:
            return False
        return path == self.path or path.startswith(self.path + "/")


def _split(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path without a trailing /) of an http(s) URL as httpx requests
    it; None for anything else, or a path that smuggles a / or a dot segment."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    scheme = parsed.scheme.lower()
    host = parsed.raw_host.decode("ascii", "replace").lower()
    if scheme not in DEFAULT_PORTS or not host:
        return None
    raw_path = parsed.raw_path.decode("ascii", "replace").split("?", 1)[0]
    for segment in raw_path.split("/"):
        decoded = unquote(segment)
        if decoded in (".", "..") or ("/" in decoded or "\\" in decoded):
            return None
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
    return scheme, host, port, raw_path.rstrip("/")


def parse_endpoint(text: str, setting: str) -> Endpoint:
    """An entry's URL (port `*` for any); ConfigError naming the setting when malformed."""
    wildcard = False
    scheme, sep, rest = text.partition("://")
    netloc, slash, path = rest.partition("/")
    if sep and netloc.endswith(":*"):
        wildcard = True
        netloc = netloc[:-2]
    candidate = f"{scheme}{sep}{netloc}{slash}{path}"
    parts = _split(candidate)
    problem = None
    if not sep or parts is None:
        problem = "is not an http(s) URL"
    elif "@" in netloc or "?" in path or "#" in path:
        problem = "may not carry a user, a query or a fragment"
    if problem is not None or parts is None:
        raise ConfigError(f"{setting}: {text!r} {problem}; write URLs such as "
                          f"https://my-proxy.example/v1 or http://queue:*/v1")
    scheme_, host, port, path_ = parts
    return Endpoint(scheme_, host, None if wildcard else port, path_)


def key_endpoints(env: Mapping[str, str]) -> dict[str, tuple[Endpoint, ...]]:
    """PGVECTORIZER_KEY_ENDPOINTS as {key name: endpoints}; a name listed twice gets both."""
    raw = env.get(KEY_ENDPOINTS_ENV) or ""
    out: dict[str, tuple[Endpoint, ...]] = {}
    for entry in re.split(r"[\s;]+", raw.strip()):
        if not entry:
            continue
        name, sep, urls = entry.partition("=")
        if not sep or not _NAME.fullmatch(name) or not urls:
            raise ConfigError(f"{KEY_ENDPOINTS_ENV}: {entry!r} is not NAME=URL[,URL...] (entries "
                              f"separated by spaces or ';')")
        found = tuple(parse_endpoint(u, KEY_ENDPOINTS_ENV) for u in urls.split(",") if u)
        if not found:
            raise ConfigError(f"{KEY_ENDPOINTS_ENV}: {entry!r} lists no URL")
        out[name] = out.get(name, ()) + found
    return out


def allowed_endpoints(env: Mapping[str, str]) -> tuple[Endpoint, ...]:
    """PGVECTORIZER_ALLOWED_ENDPOINTS as endpoints."""
    return listed_endpoints(env, ALLOWED_ENDPOINTS_ENV)


def listed_endpoints(env: Mapping[str, str], setting: str) -> tuple[Endpoint, ...]:
    """The URLs of a setting that lists them (separated by whitespace, `,` or `;`) as
    endpoints; ConfigError naming the setting for a malformed one."""
    raw = env.get(setting) or ""
    return tuple(parse_endpoint(u, setting) for u in re.split(r"[\s,;]+", raw.strip()) if u)


def url_matches(url: str, listed: str) -> bool:
    """Whether base_url `url` is at or below the URL `listed` (as written in a setting)."""
    return parse_endpoint(listed, "url").matches(url)


def read_api_key(env: Mapping[str, str], name: str, *, base_url: str, default_name: str,
                 default_url: str) -> str | None:
    """The key in variable `name`, checked for being sent to base_url; None when unset or
    empty. ConfigError when `name` may not be read as a key, KeyEndpointRefused when the key
    may not go to base_url."""
    listed = key_endpoints(env)
    if not name.endswith(KEY_SUFFIX) and name not in listed:
        raise ConfigError(
            f"api_key_name {name!r}: only environment variables whose names end in "
            f"{KEY_SUFFIX}, or that {KEY_ENDPOINTS_ENV} lists, may be read as API keys "
            f"(rename the variable, or list it as {name}=<URL> in {KEY_ENDPOINTS_ENV})")
    key = env.get(name)
    if not key:
        return None
    allowed = listed.get(name, ())
    if name == default_name:
        allowed += (parse_endpoint(default_url, "default"),)
    if any(e.matches(base_url) for e in allowed):
        return key
    raise KeyEndpointRefused(
        f"the API key in {name} may not be sent to {base_url}: a key goes only to its "
        f"provider's default endpoint or to URLs that {KEY_ENDPOINTS_ENV} lists for it. To "
        f"allow it, add {name}={_suggest(base_url)} to {KEY_ENDPOINTS_ENV} {_WHERE}")


def check_server_endpoint(base_url: str, env: Mapping[str, str], *,
                          defaults: Iterable[str] = ()) -> None:
    """EndpointNotAllowed unless a request from inside PostgreSQL may go to base_url: one of
    `defaults` (the provider's default endpoint), a URL in PGVECTORIZER_KEY_ENDPOINTS, or one
    in PGVECTORIZER_ALLOWED_ENDPOINTS."""
    allowed = []
    for default in defaults:
        try:
            allowed.append(parse_endpoint(default, "default"))
        except ConfigError:
            continue  # an unreadable default (a bad OLLAMA_HOST) allows nothing
    for listed in key_endpoints(env).values():
        allowed.extend(listed)
    allowed.extend(allowed_endpoints(env))
    if any(e.matches(base_url) for e in allowed):
        return
    raise EndpointNotAllowed(
        f"{base_url} is not an endpoint that the database server may call: add "
        f"{_suggest(base_url)} to {ALLOWED_ENDPOINTS_ENV} in the PostgreSQL server's "
        f"environment (e.g. /etc/postgresql/<version>/<cluster>/environment) and restart it")


def _suggest(base_url: str) -> str:
    """base_url as an entry for a setting (the URL as given when it cannot be read)."""
    parts = _split(base_url)
    if parts is None:
        return base_url
    scheme, host, port, path = parts
    if ":" in host:
        host = f"[{host}]"
    shown = "" if port == DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{shown}{path}"
