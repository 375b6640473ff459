"""Where file bodies live: the :class:`FileStore` contract and its local-directory backend.

A body is stored under its file id, never under a name a client chose. Writing goes to a
temporary file beside the final one, renamed into place on :meth:`BlobWriter.commit`, so an
upload cut off halfway (or refused at its end) leaves nothing a reader could ever see.
Reading streams chunks or lines from an open file: nothing holds a whole body in memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

from batchgate.errors import BatchgateError, RequestError

CHUNK_BYTES = 64 * 1024
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
PARTIALS_DIR = ".partial"
STALE_PARTIAL_SECONDS = 3600.0
"""A temporary body not written to for this long belongs to a process that died mid-upload
(an upload writes as its bytes arrive; a client silent for an hour is gone too)."""
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BlobMissingError(BatchgateError):
    """A file's record exists but its body does not (deleted under us, or a lost disk)."""

    code = "file_body_missing"


class LineTooLongError(RequestError):
    """A line of a file is longer than the reader allows."""

    code = "line_too_long"

    def __init__(self, line: int, limit: int) -> None:
        super().__init__(f"Line {line} is longer than {limit} bytes.", param="line")
        self.line = line


class BlobWriter(Protocol):
    """A body being written; nothing is visible until :meth:`commit`."""

    size: int

    def write(self, data: bytes) -> None:
        """Append ``data``."""

    def commit(self) -> None:
        """Make the body visible under its id, atomically."""

    def discard(self) -> None:
        """Drop what was written (a no-op after commit)."""

    def __enter__(self) -> BlobWriter: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Discard unless committed."""


class FileStore(Protocol):
    """Where file bodies live, by file id."""

    def create(self, file_id: str) -> BlobWriter:
        """A writer for a new body; use it as a context manager."""

    def chunks(self, file_id: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The body in chunks, opened now (:class:`BlobMissingError` when absent)."""

    def lines(self, file_id: str, *,
              max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[bytes]:
        """The body line by line, each with its ``\\n`` (:class:`LineTooLongError`)."""

    def delete(self, file_id: str) -> bool:
        """Remove a body; False when there was none."""

    def sweep_partials(self, older_than: float = STALE_PARTIAL_SECONDS) -> int:
        """Remove temporary bodies left by processes that died mid-write; how many."""


class _LocalWriter:
    """A temporary file in the store's partials folder, renamed into place on commit."""

    def __init__(self, final: Path, partial: Path) -> None:
        self._final = final
        self._partial = partial
        self._file: BinaryIO | None = partial.open("xb")
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError("the body was already committed or discarded")
        self._file.write(data)
        self.size += len(data)

    def commit(self) -> None:
        if self._file is None:
            raise ValueError("the body was already committed or discarded")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._partial, self._final)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            with contextlib.suppress(FileNotFoundError):
                self._partial.unlink()

    def __enter__(self) -> _LocalWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard()


class LocalDirectoryStore:
    """Bodies as files named by id in one directory (created when missing).

    Every process that serves or runs files (API, workers) must see the same directory:
    ``batchgate up`` runs them on one machine; across hosts, mount a shared one.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._partials = self.root / PARTIALS_DIR
        self._partials.mkdir(parents=True, exist_ok=True)

    def path(self, file_id: str) -> Path:
        """Where a body lives; ids are checked so no name ever leaves the directory."""
        if not _NAME_RE.match(file_id):
            raise ValueError(f"not a storable file id: {file_id!r}")
        return self.root / file_id

    def create(self, file_id: str) -> _LocalWriter:
        final = self.path(file_id)
        partial = self._partials / f"{file_id}.{secrets.token_hex(4)}"
        return _LocalWriter(final, partial)

    def chunks(self, file_id: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        file = self._open(file_id)

        def read() -> Iterator[bytes]:
            with file:
                while chunk := file.read(chunk_bytes):
                    yield chunk

        return read()

    def lines(self, file_id: str, *,
              max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[bytes]:
        file = self._open(file_id)

        def read() -> Iterator[bytes]:
            with file:
                number = 0
                while line := file.readline(max_line_bytes + 1):
                    number += 1
                    if len(line) > max_line_bytes and not line.endswith(b"\n"):
                        raise LineTooLongError(number, max_line_bytes)
                    yield line

        return read()

    def delete(self, file_id: str) -> bool:
        try:
            self.path(file_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def sweep_partials(self, older_than: float = STALE_PARTIAL_SECONDS) -> int:
        """Remove temporary bodies left by processes that died mid-write; how many."""
        cutoff = time.time() - older_than
        removed = 0
        for entry in self._partials.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
        return removed

    def _open(self, file_id: str) -> BinaryIO:
        try:
            return self.path(file_id).open("rb")
        except (FileNotFoundError, ValueError):
            raise BlobMissingError(f"The content of file {file_id!r} is missing.") from None
