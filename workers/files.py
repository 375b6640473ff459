"""File records (OpenAI's file object) and their metadata in Redis: the only module that
touches file keys.

A file's body lives in a :class:`~workers.filestore.FileStore` under its id; Redis holds what
the API shows (``P:file:{F}``), the owner's listing (``P:files:owner:{O}``) and, for files
uploaded with an expiry, when beat must delete them (``P:files:expiring``).
"""

from __future__ import annotations

import enum
import re
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis

from config.keys import FILE_TOMBSTONE_TTL, Keys

ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 24
_ID_RE = re.compile(rf"^file-[A-Za-z0-9]{{{ID_LENGTH}}}$")
LIST_SCAN = 1000
"""Listing reads the owner's index this many ids at a time while filtering by purpose."""


class FilePurpose(enum.StrEnum):
    """The purposes batchgate keeps files for: uploads are ``batch`` only."""

    BATCH = "batch"
    BATCH_OUTPUT = "batch_output"


UPLOAD_PURPOSES = (FilePurpose.BATCH,)


def new_file_id() -> str:
    """``file-`` and 24 random letters and digits (~143 bits)."""
    return "file-" + "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def is_file_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id batchgate made (anything else is unknown)."""
    return bool(_ID_RE.match(value))


@dataclass(frozen=True)
class FileRecord:
    """One file's metadata; :meth:`public` is OpenAI's file object."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    owner: str
    expires_at: int | None = None

    def public(self) -> dict[str, Any]:
        """The file object exactly as OpenAI's API answers it."""
        return {"id": self.id, "object": "file", "bytes": self.bytes,
                "created_at": self.created_at, "filename": self.filename,
                "purpose": self.purpose.value, "status": "processed",
                "expires_at": self.expires_at, "status_details": None}

    def fields(self) -> dict[str, str]:
        """The Redis hash of this record."""
        out = {"id": self.id, "bytes": str(self.bytes), "created_at": str(self.created_at),
               "filename": self.filename, "purpose": self.purpose.value, "owner": self.owner}
        if self.expires_at is not None:
            out["expires_at"] = str(self.expires_at)
        return out

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> FileRecord:
        """A record from its Redis hash."""
        expires = fields.get("expires_at")
        return cls(id=fields["id"], bytes=int(fields["bytes"]),
                   created_at=int(fields["created_at"]), filename=fields["filename"],
                   purpose=FilePurpose(fields["purpose"]), owner=fields["owner"],
                   expires_at=int(expires) if expires else None)

    def expired(self, now: float) -> bool:
        """Whether its ``expires_at`` has passed."""
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True)
class FilePage:
    """One page of a listing."""

    data: list[FileRecord]
    has_more: bool


class FileCatalog:
    """File metadata in Redis; ``client`` must decode responses to ``str``."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def add(self, record: FileRecord) -> None:
        """Record a file whose body is already stored, with its index entries."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.file(record.id), mapping=cast(Any, record.fields()))
        # Microsecond scores: files created in the same second still list in creation order.
        pipe.zadd(self.keys.owner_files(record.owner), {record.id: time.time()})
        if record.expires_at is not None:
            pipe.zadd(self.keys.files_expiring, {record.id: record.expires_at})
        pipe.execute()

    def get(self, file_id: str, now: float | None = None) -> FileRecord | None:
        """The file, or None when unknown, deleted or past its ``expires_at``."""
        if not is_file_id(file_id):
            return None
        fields = cast(dict[str, str], self.redis.hgetall(self.keys.file(file_id)))
        if not fields or "deleted" in fields:
            return None
        record = FileRecord.from_fields(fields)
        return None if record.expired(time.time() if now is None else now) else record

    def delete(self, file_id: str) -> None:
        """Forget a file, leaving a tombstone (and its listing entry) for an hour so a list
        cursor that names it keeps working."""
        key = self.keys.file(file_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, "deleted", str(int(time.time())))
        pipe.expire(key, FILE_TOMBSTONE_TTL)
        pipe.zrem(self.keys.files_expiring, file_id)
        pipe.execute()

    def list_files(self, owner: str, *, purpose: str | None, after: str | None, limit: int,
             ascending: bool = False) -> FilePage | None:
        """The owner's files newest first (oldest with ``ascending``), after file ``after``
        (None when ``after`` is not in their listing); prunes entries whose record is gone."""
        key = self.keys.owner_files(owner)
        start = 0
        if after is not None:
            rank_of = self.redis.zrank if ascending else self.redis.zrevrank
            rank = cast(int | None, rank_of(key, after))
            if rank is None:
                return None
            start = rank + 1
        read = self.redis.zrange if ascending else self.redis.zrevrange
        found: list[FileRecord] = []
        now = time.time()
        while len(found) <= limit:
            ids = cast(list[str], read(key, start, start + LIST_SCAN - 1))
            found += self._visible(key, ids, purpose, now)
            if len(ids) < LIST_SCAN:
                break
            start += LIST_SCAN
        return FilePage(found[:limit], len(found) > limit)

    def _visible(self, key: str, ids: list[str], purpose: str | None,
                 now: float) -> list[FileRecord]:
        pipe = self.redis.pipeline(transaction=False)
        for file_id in ids:
            pipe.hgetall(self.keys.file(file_id))
        out, gone = [], []
        for file_id, fields in zip(ids, cast(list[dict[str, str]], pipe.execute()), strict=True):
            if not fields:
                gone.append(file_id)
            elif "deleted" not in fields:
                record = FileRecord.from_fields(fields)
                if not record.expired(now) and purpose in (None, record.purpose):
                    out.append(record)
        if gone:
            self.redis.zrem(key, *gone)
        return out

    def expiring(self, now: float, limit: int) -> list[str]:
        """Ids of files whose ``expires_at`` has passed."""
        return cast(list[str], self.redis.zrangebyscore(self.keys.files_expiring, "-inf", now,
                                                        start=0, num=limit))

    def forget(self, file_id: str) -> None:
        """Drop an expired file's record and schedule entry (its listing entry is pruned
        when a listing meets it)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.file(file_id))
        pipe.zrem(self.keys.files_expiring, file_id)
        pipe.execute()
