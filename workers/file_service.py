"""Files as a whole: a body in the :class:`FileStore` plus its record in the catalog.

The body is always stored first and the record written after it, so a reader never meets a
record without a body; deleting goes the other way round (record, then body).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

from workers.files import FileCatalog, FilePurpose, FileRecord, new_file_id
from workers.filestore import BlobWriter, FileStore

log = logging.getLogger(__name__)

EXPIRY_SCAN = 500


class FileService:
    """Creates, finds and removes files; the one place that keeps body and record in step."""

    def __init__(self, catalog: FileCatalog, store: FileStore) -> None:
        self.catalog = catalog
        self.store = store

    def register(self, blob_id: str, *, size: int, filename: str, purpose: FilePurpose,
                 owner: str, expires_at: int | None = None,
                 created_at: int | None = None) -> FileRecord:
        """Record a committed body as a file; the body is removed if that fails."""
        record = FileRecord(id=blob_id, bytes=size, filename=filename, purpose=purpose,
                            owner=owner, expires_at=expires_at,
                            created_at=int(time.time()) if created_at is None else created_at)
        try:
            self.catalog.add(record)
        except BaseException:
            with contextlib.suppress(OSError):
                self.store.delete(blob_id)
            raise
        return record

    def write(self, chunks: Iterable[bytes], *, filename: str, purpose: FilePurpose,
              owner: str) -> FileRecord:
        """A file made by batchgate (e.g. a batch's output) from ``chunks``, streamed."""
        file_id = new_file_id()
        writer: BlobWriter
        with self.store.create(file_id) as writer:
            for chunk in chunks:
                writer.write(chunk)
            writer.commit()
        return self.register(file_id, size=writer.size, filename=filename, purpose=purpose,
                             owner=owner)

    def delete(self, record: FileRecord) -> None:
        """Remove a file: its record first (so nobody finds it), then its body."""
        self.catalog.delete(record.id)
        self.store.delete(record.id)

    def expire_due(self, now: float | None = None) -> int:
        """Delete files whose ``expires_at`` has passed; how many. Also sweeps the temporary
        bodies of uploads whose process died (a killed API), so none lingers for long."""
        now = time.time() if now is None else now
        removed = 0
        for file_id in self.catalog.expiring(now, EXPIRY_SCAN):
            self.catalog.forget(file_id)
            self.store.delete(file_id)
            log.info("file %s expired", file_id)
            removed += 1
        self.store.sweep_partials()
        return removed
