"""Streamed ``multipart/form-data`` uploads: the file part goes straight to a blob writer.

werkzeug's form parser would buffer the file in a temporary file of its own; here the body is
read from the request stream in chunks and fed to werkzeug's sans-I/O decoder, the file part's
bytes are written to the store as they arrive and its size is capped as it grows, and the
small text fields are kept (each capped too). A body that ends before its closing boundary
(the client went away) is an error, so the caller never commits a half-received file.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Event,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    State,
)

from batchgate.errors import PayloadTooLargeError, RequestError
from workers.filestore import BlobWriter

READ_BYTES = 64 * 1024
MAX_FIELD_BYTES = 4096
MAX_PARTS = 16
MAX_FILENAME_CHARS = 255
MAX_PENDING_BYTES = 256 * 1024
"""Undecoded bytes the decoder may hold: part headers and a partial boundary need little; a
body that piles up more (endless headers, no boundary) is not a form."""
PADDING_SLACK = 64
"""Whitespace a client may put between a boundary and its line break (RFC 2046 allows it)."""
_INVALID = "invalid_multipart"
_LINE_BREAK_BYTE = re.compile(rb"[\r\n]")
_PATH_SEPARATOR = re.compile(r"[/\\]")
_MALFORMED = "The multipart body is malformed or incomplete."


@dataclass
class UploadForm:
    """What a multipart body held besides the file's bytes."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    """The file part's (sanitized) filename; None when no file part came."""


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` body; 400 for any other body."""
    mimetype, options = parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary:
        raise RequestError("The body must be multipart/form-data with a 'file' part and a "
                           "'purpose' field.", code="invalid_content_type")
    try:
        return boundary.encode("latin-1")
    except UnicodeEncodeError:
        raise RequestError("The multipart boundary is not valid.", code=_INVALID) from None


def clean_filename(name: str) -> str:
    """``name``'s last path component, without control or format characters (CR, LF, NUL,
    bidi overrides...); kept only as metadata, never as a path. Directories are dropped as
    RFC 7578 (via RFC 2183, 2.3) asks of receivers, so a client that saves a download under
    the file object's ``filename`` cannot be led out of its folder."""
    cleaned = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))
    cleaned = _PATH_SEPARATOR.split(cleaned)[-1].strip()
    if cleaned in (".", ".."):
        cleaned = ""
    if len(cleaned) > MAX_FILENAME_CHARS:
        raise RequestError(f"The filename is longer than {MAX_FILENAME_CHARS} characters.",
                           param="file", code="invalid_filename")
    return cleaned


def _read(stream: IO[bytes]) -> Iterator[bytes | None]:
    """The body in chunks, then None; a connection lost midway is a 400."""
    while True:
        try:
            data = stream.read(READ_BYTES)
        except RequestEntityTooLarge:
            raise PayloadTooLargeError("The upload is larger than this server accepts.",
                                       code="file_too_large") from None
        except (ClientDisconnected, OSError):
            raise RequestError("The upload ended before the body was complete.",
                               code="incomplete_body") from None
        if not data:
            yield None
            return
        yield data


class _FormReader:
    """The decoder's events applied to a form: fields kept, the file part written out."""

    def __init__(self, sink: BlobWriter, *, file_field: str, max_file_bytes: int,
                 on_field: Callable[[str, str], None] | None) -> None:
        self.form = UploadForm()
        self._sink = sink
        self._file_field = file_field
        self._max = max_file_bytes
        self._on_field = on_field
        self._parts = 0
        self._name: str | None = None
        self._is_file = False
        self._buffer = bytearray()

    def start(self, event: Field | File) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise RequestError(f"The form has more than {MAX_PARTS} parts.", code=_INVALID)
        name = event.name
        if not name:
            raise RequestError("A form part has no name.", code=_INVALID)
        shown = name[:64]
        is_file = isinstance(event, File)
        if is_file != (name == self._file_field):
            raise RequestError(f"Only {self._file_field!r} may be a file part, and it must be "
                               "one (with a filename).", param=shown, code=_INVALID)
        if name in self.form.fields or (is_file and self.form.filename is not None):
            raise RequestError(f"The form field {shown!r} was sent more than once.",
                               param=shown, code=_INVALID)
        if isinstance(event, File):
            self.form.filename = clean_filename(event.filename)
        self._name, self._is_file = name, is_file
        self._buffer.clear()

    def data(self, event: Data) -> None:
        if self._is_file:
            if self._sink.size + len(event.data) > self._max:
                raise PayloadTooLargeError(f"The file is larger than {self._max} bytes.",
                                           param=self._file_field, code="file_too_large")
            self._sink.write(event.data)
        elif self._name is not None:
            self._buffer += event.data
            if len(self._buffer) > MAX_FIELD_BYTES:
                raise RequestError(f"The form field {self._name[:64]!r} is longer than "
                                   f"{MAX_FIELD_BYTES} bytes.", param=self._name[:64],
                                   code=_INVALID)
        if not event.more_data:
            self._end()

    def _end(self) -> None:
        if not self._is_file and self._name is not None:
            try:
                value = self._buffer.decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(f"The form field {self._name[:64]!r} is not UTF-8 text.",
                                   param=self._name[:64], code=_INVALID) from None
            self.form.fields[self._name] = value
            if self._on_field is not None:
                self._on_field(self._name, value)
        self._name, self._is_file = None, False


class _Decoder(MultipartDecoder):
    """werkzeug's decoder with its held-back tail fixed.

    In DATA state the decoder hands out part data up to where a delimiter
    (``CRLF--boundary``) might begin in the buffer's tail. werkzeug 3.1's version misjudges
    that when the buffer ends a byte or two into a delimiter: it hands out the delimiter's
    CR, matches the rest as an LF-only delimiter, and the part gains a stray ``\r`` (the
    upload's bytes change with how the network chunked them; pallets/werkzeug#3285). Here
    everything from the first line-break byte within a delimiter's length of the end is held
    back instead.
    """

    def _last_partial_boundary_index(self, data: bytes | bytearray) -> int:
        window = len(self.boundary) + len(b"\r\n----\r\n") + PADDING_SLACK
        match = _LINE_BREAK_BYTE.search(data, max(0, len(data) - window))
        return match.start() if match else len(data)


def _events(decoder: MultipartDecoder) -> Iterator[Event]:
    """The events the data received so far completes."""
    while True:
        try:
            event = decoder.next_event()
        except ValueError:  # werkzeug's word for a malformed (or cut-off) body
            raise RequestError(_MALFORMED, code=_INVALID) from None
        if isinstance(event, NeedData):
            return
        yield event
        if isinstance(event, Epilogue):
            return  # the decoder is done: asking it for more is an error


def read_form(stream: IO[bytes], boundary: bytes, sink: BlobWriter, *, file_field: str,
              max_file_bytes: int,
              on_field: Callable[[str, str], None] | None = None) -> UploadForm:
    """Read a whole multipart body, writing the ``file_field`` part to ``sink`` (not
    committed) and calling ``on_field`` as each text field completes, so a bad one fails
    before the file is read. Raises 400/413 errors; returns only for a complete body."""
    decoder = _Decoder(boundary)
    reader = _FormReader(sink, file_field=file_field, max_file_bytes=max_file_bytes,
                         on_field=on_field)
    complete = False
    for chunk in _read(stream):
        decoder.receive_data(chunk)
        for event in _events(decoder):
            if isinstance(event, Field | File):
                reader.start(event)
            elif isinstance(event, Data):
                reader.data(event)
            elif isinstance(event, Epilogue):
                complete = True
        if decoder.state is State.EPILOGUE:
            decoder.buffer.clear()  # after the closing boundary: ignored, never kept
        elif len(decoder.buffer) > MAX_PENDING_BYTES:
            raise RequestError(_MALFORMED, code=_INVALID)
    if not complete:
        raise RequestError(_MALFORMED, code=_INVALID)
    return reader.form
