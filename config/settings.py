"""The one typed settings object every part of batchgate is built from.

Configuration flows one way: YAML (LiteLLM's ``config.yaml`` shape) + ``BATCHGATE_*``
environment -> :class:`Settings` (by :func:`config.loader.load_settings`) -> constructors.
Nothing here reads the environment or the disk; these are plain immutable values.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ROUTING_STRATEGY = "simple-shuffle"
DEFAULT_NUM_RETRIES = 2
"""LiteLLM Router's default, and the OpenAI SDK's ``DEFAULT_MAX_RETRIES``."""
DEFAULT_MAX_FALLBACKS = 5
"""LiteLLM's ``max_fallbacks``: fallback groups tried at most, per request."""
DEFAULT_ALLOWED_FAILS = 3
DEFAULT_COOLDOWN_TIME = 5.0
DEFAULT_REQUEST_TIMEOUT = 600.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_AZURE_API_VERSION = "2024-10-21"
DEFAULT_OPENAI_API_BASE = "https://api.openai.com/v1"
DEFAULT_OLLAMA_API_BASE = "http://localhost:11434"
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
DEFAULT_KEY_PREFIX = "batchgate"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4000
DEFAULT_COMPLETION_WINDOW = 24 * 3600.0
DEFAULT_MAX_BATCH_REQUESTS = 50_000
DEFAULT_MAX_BATCH_LINES = 1_000_000
DEFAULT_JOB_TTL = 7 * 24 * 3600.0
DEFAULT_FEED_WINDOW = 2048
DEFAULT_CHUNK_SIZE = 8
DEFAULT_EMBEDDING_CHUNK_SIZE = 512
DEFAULT_WORKER_CONCURRENCY = 256
DEFAULT_MAX_WAIT = 60.0
DEFAULT_WEBHOOK_TIMEOUT = 10.0
DEFAULT_WEBHOOK_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
DEFAULT_LEASE_MARGIN = 30.0
DEFAULT_MAX_FILE_BYTES = 200 * 1024 * 1024
"""OpenAI's limit on a batch input file, 200 MB, read as MiB (the larger reading)."""

RETRY_POLICY_KEYS = ("BadRequestErrorRetries", "AuthenticationErrorRetries", "TimeoutErrorRetries",
                     "RateLimitErrorRetries", "ContentPolicyViolationErrorRetries",
                     "InternalServerErrorRetries")
"""LiteLLM's ``RetryPolicy`` fields: retries per kind of failure."""

ENDPOINTS = ("chat/completions", "completions", "embeddings", "moderations")
"""Upstream endpoints batchgate routes, relative to a deployment's OpenAI-style base URL."""


class Provider(enum.StrEnum):
    """The ``litellm_params.model`` prefixes batchgate knows how to call."""

    OPENAI = "openai"
    AZURE = "azure"
    HOSTED_VLLM = "hosted_vllm"
    OLLAMA = "ollama"


class Secret:
    """A credential. Its repr and str never show the value; only ``reveal()`` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The clear value: for building an upstream request header, nothing else."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Deployment:
    """One upstream deployment: a ``model_list`` entry."""

    id: str
    """``model_info.id`` when given, else a stable digest of what identifies the entry."""
    model_name: str
    """The model group callers name in ``"model"``."""
    provider: Provider
    model: str
    """The model name sent upstream (the part after the provider prefix)."""
    api_base: str
    """OpenAI-style base URL, ending before ``/chat/completions`` (``/v1`` for most servers;
    for Azure, the resource endpoint)."""
    api_key: Secret | None = None
    api_version: str | None = None
    timeout: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel_requests: int | None = None
    weight: float = 1.0
    order: int | None = None
    model_info: Mapping[str, Any] = field(default_factory=dict)
    default_params: Mapping[str, Any] = field(default_factory=dict)
    """OpenAI request params from ``litellm_params`` (e.g. ``temperature``) applied when the
    caller did not set them."""
    max_input_tokens: int | None = None
    """LiteLLM's ``max_input_tokens`` (``model_info`` or ``litellm_params``, which wins): the
    longest single input (a prompt, or one embeddings input) the model takes; ``None`` when
    not declared."""
    max_inputs_per_request: int | None = None
    """batchgate's own key (same places): the most embeddings inputs one upstream request may
    carry when packing; ``None`` means OpenAI's limit."""
    max_tokens_per_request: int | None = None
    """batchgate's own key (same places): the most input tokens one upstream embeddings
    request may carry when packing; ``None`` means OpenAI's limit."""

    def url(self, endpoint: str) -> str:
        """The full upstream URL for ``endpoint`` (one of :data:`ENDPOINTS`)."""
        base = self.api_base.rstrip("/")
        if self.provider is Provider.AZURE:
            return (
                f"{base}/openai/deployments/{self.model}/{endpoint}"
                f"?api-version={self.api_version or DEFAULT_AZURE_API_VERSION}"
            )
        return f"{base}/{endpoint}"

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate to this deployment (empty when it needs no key)."""
        if self.api_key is None:
            return {}
        if self.provider is Provider.AZURE:
            return {"api-key": self.api_key.reveal()}
        return {"Authorization": f"Bearer {self.api_key.reveal()}"}

    def public(self) -> dict[str, Any]:
        """What may be shown to a caller: no key, no headers."""
        return {
            "id": self.id,
            "model_name": self.model_name,
            "provider": self.provider.value,
            "model": self.model,
            "api_base": self.api_base,
        }


@dataclass(frozen=True)
class RouterSettings:
    """LiteLLM's ``router_settings`` that batchgate honours."""

    routing_strategy: str = DEFAULT_ROUTING_STRATEGY
    num_retries: int = DEFAULT_NUM_RETRIES
    timeout: float | None = None
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    context_window_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    content_policy_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_fallbacks: tuple[str, ...] = ()
    allowed_fails: int = DEFAULT_ALLOWED_FAILS
    cooldown_time: float = DEFAULT_COOLDOWN_TIME
    retry_after: float = 0.0
    model_group_alias: Mapping[str, str] = field(default_factory=dict)
    retry_policy: Mapping[str, int] = field(default_factory=dict)
    """Retries per kind of failure, keyed by :data:`RETRY_POLICY_KEYS`; unset kinds use
    ``num_retries`` (transient ones) or 0."""
    model_group_retry_policy: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """A group's own retry policy, replacing ``retry_policy`` for that group (as in LiteLLM)."""
    max_fallbacks: int = DEFAULT_MAX_FALLBACKS
    disable_cooldowns: bool = False


@dataclass(frozen=True)
class LiteLLMSettings:
    """LiteLLM's ``litellm_settings`` that batchgate honours."""

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    drop_params: bool = False


@dataclass(frozen=True)
class ApiBasePattern:
    """One ``allowed_api_bases`` entry: a URL prefix, or ``scheme://*.domain[:port][/path]``."""

    scheme: str
    host: str
    """Lower case, no trailing dot; for a wildcard, the domain after ``*.``."""
    port: int
    path: str
    """Path prefix without a trailing slash (``""``: any path)."""
    wildcard: bool = False
    """``*.`` matches exactly one more label in front of ``host``."""


@dataclass(frozen=True)
class ClientCredentialsSettings:
    """``general_settings.client_side_credentials``: callers' own ``api_key``/``api_base``."""

    enabled: bool = False
    allowed_api_bases: tuple[ApiBasePattern, ...] = ()
    """Where a caller's ``api_base`` may point; empty: callers may only bring a key."""


@dataclass(frozen=True)
class GeneralSettings:
    """LiteLLM's ``general_settings`` that batchgate honours."""

    master_key: Secret | None = None
    client_side_credentials: ClientCredentialsSettings = field(
        default_factory=ClientCredentialsSettings)


@dataclass(frozen=True)
class ServerSettings:
    """batchgate's own settings: the ``batchgate_settings`` section, then ``BATCHGATE_*``."""

    redis_url: str | None = field(default=None, repr=False)
    """May carry a password, so it is kept out of ``repr``."""
    key_prefix: str = DEFAULT_KEY_PREFIX
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT


@dataclass(frozen=True)
class QueueSettings:
    """The queue's knobs (also in ``batchgate_settings``)."""

    secret_key: Secret | None = None
    """Fernet key(s), comma-separated for rotation, that encrypt secrets kept in Redis
    (webhook secrets). ``batchgate up`` makes an ephemeral one when none is set."""
    completion_window: float = DEFAULT_COMPLETION_WINDOW
    max_batch_requests: int = DEFAULT_MAX_BATCH_REQUESTS
    job_ttl: float = DEFAULT_JOB_TTL
    """Seconds a finished job's records are kept."""
    feed_window: int = DEFAULT_FEED_WINDOW
    """Items of one job on the broker or in flight at once."""
    chunk_size: int = DEFAULT_CHUNK_SIZE
    """Batch items per Celery task."""
    embedding_chunk_size: int = DEFAULT_EMBEDDING_CHUNK_SIZE
    """Embedding batch items per Celery task: a chunk's items are packed into as few upstream
    requests as the deployments' limits allow, so bigger chunks mean fuller requests."""
    worker_concurrency: int = DEFAULT_WORKER_CONCURRENCY
    max_wait: float = DEFAULT_MAX_WAIT
    """Upper bound of ``?wait=`` on long polls."""
    item_lease: float | None = None
    """Seconds before an unfinished chunk is handed out again; default: the longest
    upstream timeout plus a margin."""
    outage_wait: float | None = None
    """Seconds a queued item waits for a model group none of whose deployments can be reached
    (refused, unresolvable, connect timeout) once its retries and fallbacks are spent, before
    it fails with 503 ``upstream_unavailable``; default: as long as its job's completion
    window lasts (it then ends ``expired``)."""
    webhook_allowed_hosts: tuple[str, ...] = ()
    webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    webhook_schedule: tuple[float, ...] = DEFAULT_WEBHOOK_SCHEDULE


@dataclass(frozen=True)
class FilesSettings:
    """The Files API's knobs (also in ``batchgate_settings``)."""

    files_dir: str | None = None
    """Where uploaded and generated files are kept; ``None`` means
    :func:`config.paths.default_files_dir` (the loader fills it in)."""
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    """The largest file ``POST /v1/files`` accepts (413 above it)."""
    max_batch_lines: int = DEFAULT_MAX_BATCH_LINES
    """The most requests one ``/v1/batches`` input file may hold (its batch fails above)."""


@dataclass(frozen=True)
class Settings:
    """Everything batchgate needs to run, loaded once at start."""

    source: str
    """Where it came from: a file path, ``<demo>``, or ``<env>`` (no file)."""
    deployments: tuple[Deployment, ...]
    router: RouterSettings = field(default_factory=RouterSettings)
    litellm: LiteLLMSettings = field(default_factory=LiteLLMSettings)
    general: GeneralSettings = field(default_factory=GeneralSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    files: FilesSettings = field(default_factory=FilesSettings)

    def groups(self) -> dict[str, tuple[Deployment, ...]]:
        """Deployments by model group, in config order."""
        out: dict[str, list[Deployment]] = {}
        for d in self.deployments:
            out.setdefault(d.model_name, []).append(d)
        return {name: tuple(ds) for name, ds in out.items()}

    def resolve_group(self, name: str) -> str | None:
        """The model group ``name`` refers to (directly or via ``model_group_alias``)."""
        if any(d.model_name == name for d in self.deployments):
            return name
        alias = self.router.model_group_alias.get(name)
        if alias is not None and any(d.model_name == alias for d in self.deployments):
            return alias
        return None

    def lease_seconds(self) -> float:
        """How long one item may run before its chunk is handed out again."""
        if self.queue.item_lease is not None:
            return self.queue.item_lease
        longest = max((self.timeout_for(d) for d in self.deployments),
                      default=self.litellm.request_timeout)
        return longest + DEFAULT_LEASE_MARGIN

    def timeout_for(self, deployment: Deployment) -> float:
        """Seconds to wait for one upstream answer from ``deployment``."""
        if deployment.timeout is not None:
            return deployment.timeout
        if self.router.timeout is not None:
            return self.router.timeout
        return self.litellm.request_timeout
