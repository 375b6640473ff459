"""``batchgate embed``'s record of a run: its input's identity and, per part, its batch and
the length of OUT once the part was appended. Saved atomically (temp file + replace), only
after OUT was flushed and fsynced, so a resumed run can trust it."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from batchgate.errors import BatchgateError

STATE_VERSION = 1


class EmbedError(BatchgateError):
    """The embedding run cannot go on; the message says why and is fit to print."""


class PartStatus(StrEnum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    APPENDED = "appended"


@dataclass
class Part:
    """One part of the input: its lines, its batch, and how far it got."""

    first: int
    count: int
    offset: int
    status: PartStatus = PartStatus.PENDING
    batch_id: str | None = None
    input_file_id: str | None = None
    batch_status: str | None = None
    done: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    out_length: int | None = None

    def forget_batch(self) -> None:
        """Back to pending: the part will be submitted again."""
        self.status, self.batch_id, self.input_file_id = PartStatus.PENDING, None, None
        self.batch_status, self.done = None, 0
        self.output_file_id = self.error_file_id = None

    def lines(self) -> str:
        """Its line indices, for messages."""
        return f"lines {self.first}-{self.first + self.count - 1}"


@dataclass
class EmbedState:
    """Everything a resumed run needs; saved as JSON next to OUT."""

    input_path: str
    input_size: int
    input_mtime_ns: int
    model: str
    part_size: int
    total: int
    parts: list[Part] = field(default_factory=list)

    def out_length(self) -> int:
        """The length OUT had after the last part appended (0 before any)."""
        appended = [p for p in self.parts if p.status is PartStatus.APPENDED]
        return (appended[-1].out_length or 0) if appended else 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object saved."""
        data = {k: v for k, v in vars(self).items() if k != "parts"}
        return {"version": STATE_VERSION, **data, "parts": [vars(p) for p in self.parts]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmbedState:
        """Read what :meth:`to_json` saved."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        parts = [Part(**{**p, "status": PartStatus(p["status"])}) for p in data["parts"]]
        fields = {k: v for k, v in data.items() if k not in ("version", "parts")}
        return cls(**fields, parts=parts)


def input_identity(path: Path) -> tuple[str, int, int]:
    """``(absolute path, size, mtime_ns)``: the input a state belongs to."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def save_state(state: EmbedState, path: Path) -> None:
    """Write the state atomically: a synced temporary file renamed over the old one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(state.to_json(), out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> EmbedState:
    """The state saved at ``path``."""
    try:
        return EmbedState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EmbedError(f"{path}: not a usable embed state ({exc}); delete it to start "
                         f"over") from None


def check_resumable(state: EmbedState, input_path: Path, model: str, part_size: int) -> None:
    """Refuse to resume a state made for another input, model or part size."""
    path, size, mtime_ns = input_identity(input_path)
    if path != state.input_path:
        raise EmbedError(f"the run to resume embedded {state.input_path}, not {path}")
    if (size, mtime_ns) != (state.input_size, state.input_mtime_ns):
        raise EmbedError(f"{path} changed since the run to resume began (size or mtime); "
                         f"delete the state file to start over")
    if model != state.model:
        raise EmbedError(f"the run to resume used --model {state.model}, not {model}")
    if part_size != state.part_size:
        raise EmbedError(f"the run to resume used --part-size {state.part_size}, "
                         f"not {part_size}")
