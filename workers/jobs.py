"""The job model: kinds, statuses, items and their outcomes. Pure: no Redis here.

A **job** is one submission; an **item** is one request for one model group, the unit of
scheduling, retry and result. Every item ends exactly once with one outcome. Job statuses
use the OpenAI Batch vocabulary; ``/queue/*`` shows a job waiting for capacity as ``queued``
(``/v1/batches`` shows the same state as ``validating``).
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.usage import Usage


class JobKind(enum.StrEnum):
    SINGLE = "single"
    COMPARE = "compare"
    BATCH = "batch"


class JobStatus(enum.StrEnum):
    VALIDATING = "validating"
    """A ``/v1/batches`` job whose input file is being read and checked."""
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        """True once the job will never change again."""
        return self in ENDED


ENDED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.EXPIRED,
                   JobStatus.CANCELLED})


class Outcome(enum.StrEnum):
    """How one item ended; also the name of the job's counter for it."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


INTERACTIVE_QUEUE = "interactive"
BULK_QUEUE = "bulk"
DEFAULT_PRIORITY = {JobKind.SINGLE: 5, JobKind.COMPARE: 5, JobKind.BATCH: 0}
INTERACTIVE_PRIORITY = 5
"""Jobs at or above this priority go to the interactive queue, which workers drain first."""


def new_job_id(prefix: str = "job") -> str:
    """A fresh, unguessable job id (``batch_...`` for ``/v1/batches`` jobs)."""
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Item:
    """One request for one model group, as stored before it runs."""

    index: int
    custom_id: str
    model: str
    """The model group."""
    body: dict[str, Any]

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps({"custom_id": self.custom_id, "model": self.model, "body": self.body},
                          separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, index: int, text: str | bytes) -> Item:
        """Read the stored form back."""
        data = json.loads(text)
        return cls(index, data["custom_id"], data["model"], data["body"])


@dataclass(frozen=True)
class NewJob:
    """A validated submission, ready to be written."""

    id: str
    kind: JobKind
    endpoint: str
    items: list[Item]
    owner: str
    created_at: int
    completion_window: float
    priority: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    webhook_url: str | None = None
    webhook_secret_sealed: str | None = None
    webhook_events: tuple[str, ...] = ()
    digest: str = ""
    input_file_id: str | None = None
    """A ``/v1/batches`` job: its items come from this file, read after the job is written."""
    completion_window_text: str = ""
    """The completion window as the caller wrote it (``"24h"``), shown back verbatim."""
    credentials_sealed: Mapping[str, str] = field(default_factory=dict)
    """Callers' own upstream credentials: ``"*"`` (every item) or item index -> Fernet
    token. Kept apart from the record, in the job's ``credentials`` hash."""

    @property
    def queue(self) -> str:
        """The broker queue its items go to."""
        return INTERACTIVE_QUEUE if self.priority >= INTERACTIVE_PRIORITY else BULK_QUEUE

    def record(self) -> dict[str, str]:
        """The job hash as first written."""
        record = {
            "id": self.id, "kind": self.kind.value, "endpoint": self.endpoint,
            "status": JobStatus.QUEUED.value, "owner": self.owner,
            "created_at": str(self.created_at),
            "expires_at": str(int(self.created_at + self.completion_window)),
            "completion_window": str(self.completion_window), "priority": str(self.priority),
            "queue": self.queue, "total": str(len(self.items)), "fed": "0",
            "completed": "0", "failed": "0", "cancelled": "0", "expired": "0",
            "metadata": json.dumps(dict(self.metadata)), "models": json.dumps(self.models),
            "digest": self.digest, "webhook": "1" if self.webhook_url else "0",
        }
        if self.input_file_id is not None:
            record.update({"status": JobStatus.VALIDATING.value, "files": "1",
                           "input_file_id": self.input_file_id, "total": "0",
                           "completion_window_text": self.completion_window_text})
        if self.credentials_sealed:
            # Tells a worker to use the caller's credentials, and to fail rather than fall
            # back to the deployment's if they are gone.
            record["client_credentials"] = "1"
        if self.webhook_url:
            record.update({"webhook_url": self.webhook_url, "webhook_state": "waiting",
                           "webhook_events": json.dumps(self.webhook_events),
                           "webhook_attempts": "0"})
            if self.webhook_secret_sealed:
                record["webhook_secret"] = self.webhook_secret_sealed
        return record


USAGE_PREFIX = "usage_"
"""Usage counters in the job record (``finish_item.lua`` adds to them)."""


@dataclass(frozen=True)
class Job:
    """A job as read back from its record."""

    fields: Mapping[str, str]

    def __getitem__(self, name: str) -> str:
        return self.fields[name]

    def get(self, name: str, default: str = "") -> str:
        """A raw field of the record."""
        return self.fields.get(name, default)

    def number(self, name: str) -> int:
        """An integer field (0 when absent)."""
        return int(float(self.fields.get(name) or 0))

    @property
    def id(self) -> str:
        return self.fields["id"]

    @property
    def kind(self) -> JobKind:
        return JobKind(self.fields["kind"])

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.fields["status"])

    @property
    def stopping(self) -> Outcome | None:
        """The outcome unstarted items get once the job was cancelled or expired."""
        stop = self.fields.get("stop")
        return Outcome(stop) if stop else None

    def request_counts(self) -> dict[str, int]:
        """``{total, completed, failed}`` as OpenAI shows them, plus our other outcomes."""
        return {name: self.number(name) for name in
                ("total", "completed", "failed", "cancelled", "expired")}

    def usage(self) -> Usage:
        """Tokens and upstream requests its items have used so far."""
        return Usage.of_fields(self.fields, USAGE_PREFIX)

    def public(self) -> dict[str, Any]:
        """The ``queue.job`` object (no secret, no internal bookkeeping)."""
        out: dict[str, Any] = {
            "id": self.id, "object": "queue.job", "kind": self.kind.value,
            "endpoint": f"/v1/{self.fields['endpoint']}", "status": self.status.value,
            "url": f"/queue/response/{self.id}", "created_at": self.number("created_at"),
            "expires_at": self.number("expires_at"), "priority": self.number("priority"),
            "request_counts": self.request_counts(),
            "metadata": json.loads(self.fields.get("metadata") or "{}"),
            "usage": self.usage().as_dict(),
        }
        for name in ("in_progress_at", "cancelling_at", "finished_at", "completed_at",
                     "failed_at", "cancelled_at", "expired_at"):
            out[name] = self.number(name) or None
        if self.kind is JobKind.COMPARE:
            out["models"] = json.loads(self.fields.get("models") or "[]")
        if self.fields.get("webhook") == "1":
            out["webhook"] = {
                "url_host": _host(self.fields.get("webhook_url", "")),
                "state": self.fields.get("webhook_state"),
                "attempts": self.number("webhook_attempts"),
                "last_status": self.number("webhook_last_status") or None,
                "last_error": self.fields.get("webhook_last_error") or None,
                "delivered_at": self.number("webhook_delivered_at") or None,
            }
        return out


def _host(url: str) -> str:
    """Only the host of a webhook URL is shown back: its path or query may hold a token."""
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""


def item_result(item: Item, outcome: Outcome, *, status_code: int | None,
                body: Any = None, error: Mapping[str, Any] | None = None,
                deployment: str | None = None, finished_at: float, attempts: int | None = None,
                fallback: str | None = None) -> str:
    """The stored result of one item (JSON): ``attempts`` upstream calls it took, and the
    ``fallback`` group that answered when it was not the requested one."""
    return json.dumps({
        "index": item.index, "custom_id": item.custom_id, "model": item.model,
        "status": outcome.value, "status_code": status_code,
        "response": body if outcome is Outcome.COMPLETED else None,
        "error": None if outcome is Outcome.COMPLETED else error,
        "deployment": deployment, "attempts": attempts, "fallback": fallback,
        "finished_at": int(finished_at),
    }, separators=(",", ":"), ensure_ascii=False)


def stopped_error(outcome: Outcome) -> dict[str, Any]:
    """The error an item gets when its job was cancelled or expired before it ran."""
    if outcome is Outcome.CANCELLED:
        return {"message": "The job was cancelled before this request ran.",
                "type": "invalid_request_error", "param": None, "code": "batch_cancelled"}
    return {"message": "The job expired before this request could be run.",
            "type": "invalid_request_error", "param": None, "code": "batch_expired"}
