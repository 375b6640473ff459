"""What a process needs to run jobs, built lazily so nothing is shared across a fork."""

from __future__ import annotations

import os
import sys
from functools import cached_property

import redis

from batchgate.errors import BatchgateError
from config.keys import Keys
from config.paths import default_files_dir
from config.settings import Settings
from schedulers.backend import Budgets
from schedulers.budget import RedisBudgets
from schedulers.memory import MemoryBudgets
from schedulers.scheduler import Scheduler
from workers.file_service import FileService
from workers.files import FileCatalog
from workers.filestore import LocalDirectoryStore
from workers.gateway import Gateway
from workers.store import JobStore
from workers.upstream import UpstreamClient
from workers.virtual_keys import KeyStore
from workers.webhooks.secretbox import SecretBox

REDIS_CONNECTION_MARGIN = 64
REDIS_POOL_TIMEOUT = 20.0


def redis_connections(settings: Settings) -> int:
    """Connections one process may open to Redis: one per in-flight task, plus headroom."""
    return settings.queue.worker_concurrency + REDIS_CONNECTION_MARGIN


class QueueUnavailableError(BatchgateError):
    status = 503
    code = "queue_unavailable"


class Runtime:
    """Settings plus the clients built from them: Redis, the job store, the gateway, files."""

    def __init__(self, settings: Settings, *, client: UpstreamClient | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.server.key_prefix)
        self._client = client

    @cached_property
    def redis(self) -> redis.Redis:
        url = self.settings.server.redis_url
        if not url:
            raise QueueUnavailableError(
                "The queue is not configured: set batchgate_settings.redis_url "
                "(or BATCHGATE_REDIS_URL), or run `batchgate up`, which starts one.")
        # A blocking pool: a burst waits for a free connection instead of failing the task.
        pool = redis.BlockingConnectionPool.from_url(
            url, decode_responses=True, max_connections=redis_connections(self.settings),
            timeout=REDIS_POOL_TIMEOUT, health_check_interval=30)
        return redis.Redis(connection_pool=pool)

    @cached_property
    def store(self) -> JobStore:
        return JobStore(self.redis, self.keys, job_ttl=self.settings.queue.job_ttl)

    @cached_property
    def budgets(self) -> Budgets:
        """Rate-limit budgets: in Redis (shared by every process) when one is configured,
        else in this process."""
        if self.settings.server.redis_url:
            return RedisBudgets(self.redis, self.keys)
        return MemoryBudgets()

    @cached_property
    def gateway(self) -> Gateway:
        return Gateway(self.settings, self._client or UpstreamClient(self.settings),
                       Scheduler(self.settings, self.budgets))

    @cached_property
    def key_store(self) -> KeyStore:
        """Virtual keys and per-key usage (in Redis)."""
        return KeyStore(self.redis, self.keys)

    @cached_property
    def secretbox(self) -> SecretBox | None:
        key = self.settings.queue.secret_key
        return SecretBox(key.reveal()) if key else None

    @cached_property
    def files(self) -> FileService:
        """File bodies in the local directory store, their records in Redis."""
        folder = self.settings.files.files_dir or default_files_dir(os.environ, sys.platform)
        store = LocalDirectoryStore(folder)
        store.sweep_partials()
        return FileService(FileCatalog(self.redis, self.keys), store)
