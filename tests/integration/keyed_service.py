"""A whole batchgate (API, Celery worker, beat) with a master key and a file store of its
own, on a fresh Redis key prefix: for tests that fuzz or attack every route."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from tests.integration.conftest import MASTER_KEY, SERVER_SECRET_KEY, queue_config
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess
from tests.support.redis_scan import delete_under

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@contextlib.contextmanager
def keyed_queue_service(fake_upstream: FakeUpstream, redis_client: redis.Redis, redis_url: str,
                        **settings: Any) -> Iterator[tuple[GatewayProcess, str, Path]]:
    """``(gateway, key prefix, files_dir)``; keys and files are removed afterwards. The
    unreachable ``broken`` deployment is left out: ``/health`` would wait on it."""
    prefix = f"bgtest-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="batchgate-files-") as folder:
        config = queue_config(fake_upstream.base_url, redis_url, prefix, files_dir=folder,
                              **settings)
        config["model_list"] = [m for m in config["model_list"] if m["model_name"] != "broken"]
        config["general_settings"] = {"master_key": MASTER_KEY}
        try:
            with GatewayProcess(config, workers=1, extra_args=["--queue-workers", "1"],
                                env={"BATCHGATE_SECRET_KEY": SERVER_SECRET_KEY}) as gw:
                yield gw, prefix, Path(folder)
        finally:
            delete_under(redis_client, prefix)
