"""File bodies on disk, the streamed multipart reader, the file object's shape, the settings."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from openai.types import FileDeleted, FileObject

from api.uploads import clean_filename, multipart_boundary, read_form
from batchgate.errors import PayloadTooLargeError, RequestError
from config.loader import settings_from_mapping
from config.paths import default_files_dir
from config.settings import DEFAULT_MAX_FILE_BYTES
from workers.files import FilePurpose, FileRecord, is_file_id, new_file_id
from workers.filestore import BlobMissingError, LineTooLongError, LocalDirectoryStore

BOUNDARY = b"bOuNdArY-42"


def multipart(*parts: tuple[str, bytes, str | None], boundary: bytes = BOUNDARY) -> bytes:
    """A multipart body of ``(name, value, filename)`` parts."""
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += b"--" + boundary + b"\r\nContent-Disposition: " + disposition.encode()
        out += b"\r\n\r\n" + value + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


class Chunked(io.RawIOBase):
    """A stream whose reads return the given chunks, as a network might cut a body."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = [c for c in chunks if c]

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


def cut(data: bytes, step: int) -> list[bytes]:
    return [data[i:i + step] for i in range(0, len(data), step)]


@pytest.fixture
def store(tmp_path: Path) -> LocalDirectoryStore:
    return LocalDirectoryStore(tmp_path / "files")


def visible(store: LocalDirectoryStore) -> list[str]:
    """Bodies a reader could find, and temporary ones."""
    return sorted(p.name for p in store.root.iterdir() if p.is_file()) + sorted(
        p.name for p in (store.root / ".partial").iterdir())


# -- the local directory store ------------------------------------------------------------

def test_a_body_is_invisible_until_committed_then_read_back_in_chunks_and_lines(
        store: LocalDirectoryStore) -> None:
    file_id = new_file_id()
    with store.create(file_id) as blob:
        blob.write(b'{"a": 1}\n')
        blob.write(b'{"b": 2}\n')
        assert not store.path(file_id).exists()
        blob.commit()
    assert blob.size == 18
    assert b"".join(store.chunks(file_id, chunk_bytes=4)) == b'{"a": 1}\n{"b": 2}\n'
    assert list(store.lines(file_id)) == [b'{"a": 1}\n', b'{"b": 2}\n']
    assert visible(store) == [file_id]


def test_a_write_that_fails_midway_leaves_nothing(store: LocalDirectoryStore) -> None:
    file_id = new_file_id()

    def lose_connection() -> None:
        with store.create(file_id) as blob:
            blob.write(b"half")
            raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError):
        lose_connection()
    assert visible(store) == []
    with pytest.raises(BlobMissingError):
        store.chunks(file_id)


def test_ids_that_are_not_plain_names_never_reach_the_disk(store: LocalDirectoryStore) -> None:
    for bad in ("../etc/passwd", "a/b", "", ".", "..", "x" * 65, "file-\x00"):
        with pytest.raises(ValueError, match="not a storable file id"):
            store.path(bad)
        with pytest.raises(BlobMissingError):
            store.chunks(bad)


def test_a_line_longer_than_allowed_names_its_line_number(store: LocalDirectoryStore) -> None:
    file_id = new_file_id()
    with store.create(file_id) as blob:
        blob.write(b"short\n" + b"x" * 20 + b"\nshort\n")
        blob.commit()
    lines = store.lines(file_id, max_line_bytes=10)
    assert next(lines) == b"short\n"
    with pytest.raises(LineTooLongError) as caught:
        next(lines)
    assert caught.value.line == 2
    assert list(store.lines(file_id, max_line_bytes=21)) == [b"short\n", b"x" * 20 + b"\n",
                                                              b"short\n"]


def test_delete_removes_a_body_once(store: LocalDirectoryStore) -> None:
    file_id = new_file_id()
    with store.create(file_id) as blob:
        blob.write(b"x")
        blob.commit()
    assert store.delete(file_id) is True
    assert store.delete(file_id) is False


def test_stale_temporary_bodies_of_dead_processes_are_swept(store: LocalDirectoryStore) -> None:
    stale = store.root / ".partial" / "file-old.1234"
    stale.write_bytes(b"half")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    fresh = store.create(new_file_id())
    fresh.write(b"in progress")
    assert store.sweep_partials() == 1
    assert [p.name for p in (store.root / ".partial").iterdir()] != []
    fresh.discard()
    assert visible(store) == []


# -- the streamed multipart reader -------------------------------------------------------

def read(body: bytes | list[bytes], store: LocalDirectoryStore, *, step: int = 7,
         limit: int = 1000, on_field: object = None) -> tuple[dict[str, str], str | None, bytes]:
    file_id = new_file_id()
    chunks = cut(body, step) if isinstance(body, bytes) else body
    with store.create(file_id) as blob:
        form = read_form(Chunked(chunks), BOUNDARY, blob, file_field="file",
                         max_file_bytes=limit, on_field=on_field)  # type: ignore[arg-type]
        blob.commit()
    return form.fields, form.filename, b"".join(store.chunks(file_id))


@pytest.mark.parametrize("payload", [
    b'{"a": 1}\n', b"ends in CR\r", b"ends in CRLF\r\n", b"\r\n\r\n", b"\n\r",
    b"line\r\n--bOuNdArY-4 not a boundary\r\n--bOuNdArY-42x\r\n" * 3 + b"\r\r\n\n"])
def test_the_file_part_is_streamed_byte_for_byte_wherever_the_network_cuts_it(
        store: LocalDirectoryStore, payload: bytes) -> None:
    # werkzeug's own decoder added a stray CR when a read ended inside a delimiter.
    body = multipart(("purpose", b"batch", None), ("file", payload, "in.jsonl"))
    expected = ({"purpose": "batch"}, "in.jsonl", payload)
    for split in range(1, len(body)):
        assert read([body[:split], body[split:]], store) == expected, split
    for step in (1, 2, 3, 5, 64):
        assert read(body, store, step=step) == expected, step


def test_a_body_cut_off_before_its_closing_boundary_is_refused(
        store: LocalDirectoryStore) -> None:
    body = multipart(("purpose", b"batch", None), ("file", b"x" * 500, "in.jsonl"))
    for cut in (10, 120, len(body) - 10):
        with pytest.raises(RequestError, match="malformed or incomplete"):
            read(body[:cut], store)
    assert visible(store) == []


def test_the_file_is_capped_while_it_streams(store: LocalDirectoryStore) -> None:
    body = multipart(("file", b"x" * 101, "big.jsonl"))
    with pytest.raises(PayloadTooLargeError) as caught:
        read(body, store, limit=100)
    assert caught.value.status == 413
    assert visible(store) == []
    assert read(multipart(("file", b"x" * 100, "ok")), store, limit=100)[2] == b"x" * 100


@pytest.mark.parametrize(("body", "param"), [
    (multipart(("purpose", b"batch", None), ("purpose", b"batch", None)), "purpose"),
    (multipart(("file", b"a", "a"), ("file", b"b", "b")), "file"),
    (multipart(("file", b"not a file part", None)), "file"),
    (multipart(("other", b"a file elsewhere", "x.txt")), "other"),
    (multipart(("purpose", b"b" * 5000, None)), "purpose"),
    (multipart(("purpose", b"\xff\xfe", None)), "purpose"),
    (multipart(*[(f"f{i}", b"v", None) for i in range(17)]), None),
    (b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data\r\n\r\nv\r\n--" + BOUNDARY
     + b"--\r\n", None),
    (b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"a\"\r\n" + b"x" * 300_000,
     None),
    (b"no boundary anywhere" * 20_000, None),
])
def test_hostile_forms_are_refused_with_a_400(store: LocalDirectoryStore, body: bytes,
                                             param: str | None) -> None:
    with pytest.raises(RequestError) as caught:
        read(body, store, step=65536)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert visible(store) == []


def test_a_field_checker_refuses_before_the_file_part_is_read(
        store: LocalDirectoryStore) -> None:
    seen: list[tuple[str, str]] = []

    def check(name: str, value: str) -> None:
        seen.append((name, value))
        raise RequestError("no", param=name)

    body = multipart(("purpose", b"fine-tune", None), ("file", b"x" * 900, "a"))
    with pytest.raises(RequestError):
        read(body, store, on_field=check)
    assert seen == [("purpose", "fine-tune")]
    assert visible(store) == []


def test_filenames_lose_directories_and_control_characters_and_must_stay_short() -> None:
    assert clean_filename(" ../../etc/pa\r\nss\x00\x1b\u202e.jsonl ") == "pass.jsonl"
    assert clean_filename("C:\\Users\\me\\in.jsonl") == "in.jsonl"
    assert clean_filename("/etc/..") == ""
    assert clean_filename("données 数据.jsonl") == "données 数据.jsonl"
    with pytest.raises(RequestError):
        clean_filename("a" * 256)


@pytest.mark.parametrize("content_type", [None, "application/json", "multipart/form-data",
                                          "multipart/mixed; boundary=x", "text/plain"])
def test_anything_but_multipart_form_data_is_refused(content_type: str | None) -> None:
    with pytest.raises(RequestError) as caught:
        multipart_boundary(content_type)
    assert caught.value.code == "invalid_content_type"


# -- the file object ---------------------------------------------------------------------

def test_the_file_object_is_exactly_the_sdks() -> None:
    record = FileRecord(id=new_file_id(), bytes=12, created_at=1_700_000_000,
                        filename="in.jsonl", purpose=FilePurpose.BATCH, owner="anonymous")
    public = record.public()
    assert set(public) == set(FileObject.model_fields)
    assert FileObject.model_validate(public).model_dump() == public
    assert public["status"] == "processed"
    assert public["expires_at"] is None
    assert FileRecord.from_fields(record.fields()) == record
    expiring = FileRecord(**{**record.__dict__, "expires_at": 1_700_003_600})
    assert FileRecord.from_fields(expiring.fields()) == expiring
    assert set(FileDeleted.model_fields) == {"id", "object", "deleted"}


def test_file_ids_are_random_and_only_their_own_shape_is_accepted() -> None:
    ids = {new_file_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_file_id(i) and len(i) == 29 for i in ids)
    for bad in ("file-abc", "file-" + "a" * 23 + "/", "../file-" + "a" * 24, "", "batch"):
        assert not is_file_id(bad)


# -- settings ----------------------------------------------------------------------------

def test_files_settings_default_to_the_platform_data_dir_and_200_mb() -> None:
    settings = settings_from_mapping({}, source="<t>", env={"HOME": "/home/u"})
    assert settings.files.max_file_bytes == DEFAULT_MAX_FILE_BYTES == 200 * 1024 * 1024
    assert settings.files.files_dir == "/home/u/.local/share/batchgate-files"
    env = {"HOME": "/home/u", "XDG_DATA_HOME": "/data"}
    assert default_files_dir(env, "linux") == "/data/batchgate-files"
    assert default_files_dir({"HOME": "/Users/u"}, "darwin") == (
        "/Users/u/Library/Application Support/batchgate-files")


def test_files_settings_come_from_the_file_then_the_environment() -> None:
    data = {"batchgate_settings": {"files_dir": "/srv/files", "max_file_bytes": 1000}}
    settings = settings_from_mapping(data, source="<t>", env={})
    assert (settings.files.files_dir, settings.files.max_file_bytes) == ("/srv/files", 1000)
    env = {"BATCHGATE_FILES_DIR": "/mnt/f", "BATCHGATE_MAX_FILE_BYTES": "5"}
    settings = settings_from_mapping(data, source="<t>", env=env)
    assert (settings.files.files_dir, settings.files.max_file_bytes) == ("/mnt/f", 5)
