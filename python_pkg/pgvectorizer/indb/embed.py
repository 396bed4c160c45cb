"""ai.embed: a query's vector from the model a vectorizer (or an embedding config) names.

Per backend: one embedder per configuration (a local model loads once), and the last few
hundred answers, since a search may run the same query text again.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from ..embedders import Embedder, make_embedder
from ..errors import ConfigError
from ..pipeline import embed_isolating
from ..vectors import vector_text
from .interrupt import InterruptibleEmbedder

CACHE_SIZE = 256  # answers kept per backend

_embedders: dict[str, Embedder] = {}
_answers: OrderedDict[tuple[str, str], str] = OrderedDict()
_plans: dict[str, Any] = {}


def _config_of(plpy: Any, vectorizer_id: int | None, name: str | None) -> str:
    """The vectorizer's embedding config as canonical json."""
    by = "id" if vectorizer_id is not None else "name"
    plan = _plans.get(by)
    if plan is None:
        plan = _plans[by] = plpy.prepare(
            f"SELECT config->'embedding' AS e FROM ai.vectorizer WHERE {by} = $1",
            ["int4" if by == "id" else "text"])
    rows = plan.execute([vectorizer_id if by == "id" else name])
    if not rows:
        raise LookupError(f"vectorizer {vectorizer_id if by == 'id' else repr(name)} does not exist")
    return str(rows[0]["e"])


def _canonical(config_json: str) -> tuple[str, Mapping[str, Any]]:
    try:
        config = json.loads(config_json)
    except ValueError as exc:
        raise ConfigError(f"the embedding config is not json: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError("the embedding config must be a json object, as ai.embedding_* make")
    return json.dumps(config, sort_keys=True), config


def embed(plpy: Any, text: str, *, vectorizer_id: int | None = None, name: str | None = None,
          config: str | None = None) -> str:
    key, parsed = _canonical(config if config is not None else _config_of(plpy, vectorizer_id, name))
    answer = _answers.get((key, text))
    if answer is not None:
        _answers.move_to_end((key, text))
        return answer
    embedder = _embedders.get(key)
    if embedder is None:
        embedder = _embedders[key] = make_embedder(parsed, os.environ, server_side=True)
    # A hanging provider must not hold the backend past a cancel or statement_timeout.
    vectors, failures = embed_isolating(InterruptibleEmbedder(embedder, plpy, None), [text])
    if failures:
        raise failures[0]
    answer = vector_text(vectors[0])
    _answers[(key, text)] = answer
    if len(_answers) > CACHE_SIZE:
        _answers.popitem(last=False)
    return answer
