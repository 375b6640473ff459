"""A small typed client of a batchgate server's OpenAI Files + Batches API, over httpx.

Every failure (an error envelope, a refused connection, an answer that is not JSON) becomes
one :class:`BatchApiError` whose message is fit to print as is. Downloads are streamed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from batchgate.errors import BatchgateError

DEFAULT_BASE_URL = "http://127.0.0.1:4000"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
"""Batch statuses that never change again."""
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class BatchApiError(BatchgateError):
    """The batch API refused a request, or could not be reached (``status`` is then None)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message, code=code, param=param, status=status)
        self.http_status = status

    @property
    def transient(self) -> bool:
        """True when asking again later may well succeed (no answer, 429 or 5xx)."""
        return self.http_status is None or self.http_status in TRANSIENT_STATUSES


@dataclass(frozen=True)
class Batch:
    """The fields of an OpenAI Batch object that clients act on, and the object itself."""

    id: str
    status: str
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None
    raw: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Batch:
        """Read a Batch object; missing counts are 0 (a batch still validating has none)."""
        counts = data.get("request_counts") or {}
        return cls(id=str(data["id"]), status=str(data["status"]),
                   total=int(counts.get("total") or 0),
                   completed=int(counts.get("completed") or 0),
                   failed=int(counts.get("failed") or 0),
                   output_file_id=data.get("output_file_id"),
                   error_file_id=data.get("error_file_id"), raw=data)

    @property
    def ended(self) -> bool:
        """True once the status can no longer change."""
        return self.status in ENDED

    def error_summary(self) -> str:
        """The first validation error as ``code (line N): message``, or '' when none."""
        errors = (self.raw.get("errors") or {}).get("data") or []
        if not errors:
            return ""
        first = errors[0]
        line = f" (line {first['line']})" if first.get("line") is not None else ""
        return f"{first.get('code') or 'error'}{line}: {first.get('message') or ''}"


def normalise_base_url(url: str) -> str:
    """``url`` without a trailing ``/`` or ``/v1`` (both spellings of the server are accepted)."""
    if not url.startswith(("http://", "https://")):
        raise BatchApiError(f"{url!r} is not an http:// or https:// URL")
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def _envelope_message(response: httpx.Response) -> BatchApiError:
    """The error a non-2xx answer stands for, from its OpenAI envelope when it has one."""
    try:
        error = response.json()["error"]
        message, code, param = str(error["message"]), error.get("code"), error.get("param")
    except (ValueError, KeyError, TypeError):
        snippet = response.text[:200].strip() or response.reason_phrase
        message, code, param = f"HTTP {response.status_code}: {snippet}", None, None
    return BatchApiError(message, status=response.status_code, code=code, param=param)


def split_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines (without their ``\\n``) of a byte stream; unlike ``str.splitlines`` only ``\\n``
    ends one, so JSON text holding U+2028 and friends stays whole."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *lines, rest = rest.split(b"\n")
        yield from lines
    if rest:
        yield rest


class BatchClient:
    """``/v1/files`` and ``/v1/batches`` of one batchgate server."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None, *,
                 transport: httpx.BaseTransport | None = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> None:
        self.base_url = normalise_base_url(base_url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  transport=transport)

    @contextlib.contextmanager
    def _request(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed exchange, its errors translated; non-2xx answers raise."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _envelope_message(response)
                yield response
        except httpx.ConnectError as exc:
            raise BatchApiError(f"cannot connect to batchgate at {self.base_url} ({exc}); is "
                                f"it running? (--base-url or BATCHGATE_URL)") from None
        except httpx.TimeoutException:
            raise BatchApiError(f"{method} {self.base_url}{path}: no answer in time") from None
        except httpx.HTTPError as exc:
            raise BatchApiError(f"{method} {self.base_url}{path}: {exc}") from None

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with self._request(method, path, **kwargs) as response:
            response.read()
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise BatchApiError(f"{method} {self.base_url}{path}: the answer is not a JSON "
                                f"object", status=response.status_code)
        return data

    def upload(self, content: IO[bytes], filename: str) -> str:
        """Upload a batch input file (streamed from ``content``); its file id."""
        data = self._json("POST", "/v1/files", data={"purpose": "batch"},
                          files={"file": (filename, content, "application/jsonl")})
        return str(data["id"])

    def upload_path(self, path: Path) -> str:
        """Upload the batch input file at ``path``; its file id."""
        with path.open("rb") as content:
            return self.upload(content, path.name)

    def create_batch(self, input_file_id: str, endpoint: str, completion_window: str,
                     metadata: Mapping[str, str] | None = None) -> Batch:
        """Start a batch over an uploaded file."""
        body: dict[str, Any] = {"input_file_id": input_file_id, "endpoint": endpoint,
                                "completion_window": completion_window}
        if metadata:
            body["metadata"] = dict(metadata)
        return Batch.from_json(self._json("POST", "/v1/batches", json=body))

    def batch(self, batch_id: str) -> Batch:
        """The batch as it is now."""
        return Batch.from_json(self._json("GET", f"/v1/batches/{batch_id}"))

    def cancel(self, batch_id: str) -> Batch:
        """Ask the server to cancel a batch; its status afterwards (often ``cancelling``)."""
        return Batch.from_json(self._json("POST", f"/v1/batches/{batch_id}/cancel"))

    @contextlib.contextmanager
    def file_lines(self, file_id: str) -> Iterator[Iterator[bytes]]:
        """The lines of a file's content, streamed (empty lines skipped)."""
        with self._request("GET", f"/v1/files/{file_id}/content") as response:
            yield (line for line in split_lines(self._chunks(response)) if line.strip())

    def download(self, file_id: str, sink: IO[bytes]) -> int:
        """Copy a file's content into ``sink``, streamed; the number of bytes."""
        written = 0
        with self._request("GET", f"/v1/files/{file_id}/content") as response:
            for chunk in self._chunks(response):
                sink.write(chunk)
                written += len(chunk)
        return written

    def _chunks(self, response: httpx.Response) -> Iterator[bytes]:
        """The body's bytes, a read error mid-body translated like any other."""
        try:
            yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise BatchApiError(f"download from {self.base_url} broke off: {exc}") from None

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def parse_json_line(line: bytes, where: str) -> dict[str, Any]:
    """One JSONL line as an object, or a :class:`BatchApiError` naming ``where``."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise BatchApiError(f"{where}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BatchApiError(f"{where}: not a JSON object")
    return data
