"""A fake OpenAI-compatible upstream for tests and benchmarks (standalone: no api/workers).

Deterministic answers for chat, completions, embeddings, moderations and models; per-model
latency, rpm/tpm limits with OpenAI's headers, and injectable failures, random or triggered by
markers in the input (see :mod:`batchgate.fake_upstream.behaviour`). Control routes
(``/_stats``, ``/_config``, ``/_reset``, ``/_health``) are in :mod:`.control`.
"""

from batchgate.fake_upstream.app import build_app
from batchgate.fake_upstream.server import serve
from batchgate.fake_upstream.settings import (
    FakeSettings,
    ModelBehaviour,
    load_settings,
    parse_settings,
)

__all__ = ["FakeSettings", "ModelBehaviour", "build_app", "load_settings", "parse_settings",
           "serve"]
