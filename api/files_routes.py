"""OpenAI's Files API: upload, list, retrieve, download and delete files.

Wire-compatible with OpenAI so ``client.files.create/retrieve/list/content/delete`` of the
official SDK work unchanged. Served at ``/v1/files`` and ``/files``. Uploads are streamed to
the file store (see :mod:`api.uploads`); downloads are streamed back from it.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from api.auth import caller_is_master, caller_owner
from api.params import limit_arg
from api.uploads import MAX_FIELD_BYTES, UploadForm, multipart_boundary, read_form
from batchgate.errors import NotFoundError, PayloadTooLargeError, RequestError
from config.settings import FilesSettings
from workers.file_service import FileService
from workers.files import UPLOAD_PURPOSES, FilePurpose, FileRecord, is_file_id, new_file_id
from workers.runtime import Runtime

bp = Blueprint("files", __name__)

UPLOAD_OVERHEAD = 64 * 1024
"""Room for the multipart framing and text fields on top of ``max_file_bytes``."""
DEFAULT_LIST_LIMIT = 10_000
MAX_LIST_LIMIT = 10_000
"""OpenAI's: ``limit`` ranges from 1 to 10,000 and defaults to 10,000."""
EXPIRY_MIN_SECONDS = 3600
EXPIRY_MAX_SECONDS = 30 * 24 * 3600
"""OpenAI's bounds on ``expires_after[seconds]``: an hour to 30 days."""
EXPIRY_FIELDS = ("expires_after[anchor]", "expires_after[seconds]")


def files() -> FileService:
    """This app's files (store and catalog)."""
    runtime: Runtime = current_app.extensions["batchgate.runtime"]
    return runtime.files


def files_settings() -> FilesSettings:
    """This app's Files API settings."""
    settings: FilesSettings = current_app.extensions["batchgate.settings"].files
    return settings


def _not_found(file_id: str, param: str) -> NotFoundError:
    shown = file_id if is_file_id(file_id) else repr(file_id[:64])
    return NotFoundError(f"No such File object: {shown}", param=param)


def owned_file(file_id: str) -> FileRecord:
    """The file, if it exists and the caller may see it; 404 otherwise (never 403)."""
    record = files().catalog.get(file_id)
    if record is None or (record.owner != caller_owner() and not caller_is_master()):
        raise _not_found(file_id, "id")
    return record


def check_field(name: str, value: str) -> None:
    """Refuse a bad ``purpose`` as soon as it arrives, before the file part is read."""
    if name == "purpose" and value not in UPLOAD_PURPOSES:
        allowed = ", ".join(repr(p.value) for p in UPLOAD_PURPOSES)
        raise RequestError(f"{value[:64]!r} is not a supported purpose for uploads: "
                           f"batchgate accepts {allowed}.", param="purpose",
                           code="invalid_purpose")


def _expires_at(form: UploadForm, created_at: int) -> int | None:
    """``created_at`` + ``expires_after[seconds]`` when an expiry was asked for."""
    anchor, seconds = (form.fields.get(name) for name in EXPIRY_FIELDS)
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise RequestError("expires_after[anchor] must be 'created_at'.",
                           param="expires_after.anchor")
    try:
        after = int(seconds or "")
    except ValueError:
        after = -1
    if not EXPIRY_MIN_SECONDS <= after <= EXPIRY_MAX_SECONDS:
        raise RequestError(f"expires_after[seconds] must be an integer from "
                           f"{EXPIRY_MIN_SECONDS} to {EXPIRY_MAX_SECONDS}.",
                           param="expires_after.seconds")
    return created_at + after


def _validated(form: UploadForm, size: int, created_at: int) -> tuple[str, int | None]:
    """The upload's filename and expiry, once the whole form is read; 400s otherwise."""
    if form.filename is None:
        raise RequestError("Missing the 'file' part: send the file as multipart/form-data.",
                           param="file")
    purpose = form.fields.get("purpose")
    if not purpose:
        raise RequestError("Missing the 'purpose' field: use 'batch'.", param="purpose")
    check_field("purpose", purpose)
    expires_at = _expires_at(form, created_at)
    if size == 0:
        raise RequestError("The file is empty: a batch input file needs at least one line.",
                           param="file", code="empty_file")
    return form.filename, expires_at


@bp.post("/v1/files")
@bp.post("/files")
def upload() -> Response:
    """Upload a file (``multipart/form-data``: ``file`` and ``purpose=batch``)."""
    limit = files_settings().max_file_bytes
    # The app-wide max_request_bytes is for JSON bodies; a file may be up to its own limit.
    request.max_content_length = limit + UPLOAD_OVERHEAD + MAX_FIELD_BYTES
    if (request.content_length or 0) > request.max_content_length:
        raise PayloadTooLargeError(f"The file is larger than {limit} bytes.", param="file",
                                   code="file_too_large")
    boundary = multipart_boundary(request.headers.get("Content-Type"))
    service = files()
    file_id = new_file_id()
    with service.store.create(file_id) as blob:
        form = read_form(request.stream, boundary, blob, file_field="file",
                         max_file_bytes=limit, on_field=check_field)
        created_at = int(time.time())
        filename, expires_at = _validated(form, blob.size, created_at)
        blob.commit()
    record = service.register(file_id, size=blob.size, filename=filename,
                              purpose=FilePurpose.BATCH, owner=caller_owner(),
                              expires_at=expires_at, created_at=created_at)
    return jsonify(record.public())


def _list_args() -> tuple[int, bool]:
    limit = limit_arg(DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise RequestError("order must be 'asc' or 'desc'", param="order")
    return limit, order == "asc"


@bp.get("/v1/files")
@bp.get("/files")
def list_files() -> Response:
    """The caller's files, newest first: ``?purpose=``, ``?limit=``, ``?after=``, ``?order=``."""
    limit, ascending = _list_args()
    after = request.args.get("after") or None
    page = files().catalog.list_files(caller_owner(), purpose=request.args.get("purpose"),
                                      after=after, limit=limit, ascending=ascending)
    if page is None:
        raise _not_found(after or "", "after")
    data: list[dict[str, Any]] = [record.public() for record in page.data]
    return jsonify({"object": "list", "data": data, "has_more": page.has_more,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None})


@bp.get("/v1/files/<file_id>")
@bp.get("/files/<file_id>")
def retrieve(file_id: str) -> Response:
    """One file object."""
    return jsonify(owned_file(file_id).public())


@bp.get("/v1/files/<file_id>/content")
@bp.get("/files/<file_id>/content")
def content(file_id: str) -> Response:
    """The file's bytes, streamed from the store as they are read."""
    record = owned_file(file_id)
    chunks = files().store.chunks(record.id)
    return Response(chunks, content_type="application/octet-stream",
                    headers={"Content-Length": str(record.bytes)})


@bp.delete("/v1/files/<file_id>")
@bp.delete("/files/<file_id>")
def delete(file_id: str) -> Response:
    """Delete a file: ``{id, object: "file", deleted: true}``."""
    record = owned_file(file_id)
    files().delete(record)
    return jsonify({"id": record.id, "object": "file", "deleted": True})
