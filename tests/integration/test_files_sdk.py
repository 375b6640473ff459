"""The official openai SDK's Files API against ``batchgate up`` (gunicorn, Redis, workers)."""

from __future__ import annotations

import hashlib
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import redis

from config.keys import Keys
from tests.integration.conftest import queue_service
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess
from tests.support.redis_scan import keys_under
from tests.unit.test_files_storage import BOUNDARY, multipart
from workers.file_service import FileService
from workers.files import FileCatalog, FilePurpose
from workers.filestore import LocalDirectoryStore

pytestmark = pytest.mark.integration

MAX_FILE_BYTES = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def files_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="batchgate-files-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def files_gateway(fake_upstream: FakeUpstream, redis_client: redis.Redis, redis_url: str,
                  files_dir: Path) -> Iterator[GatewayProcess]:
    with queue_service(fake_upstream, redis_client, redis_url, files_dir=str(files_dir),
                       max_file_bytes=MAX_FILE_BYTES, max_request_bytes=64 * 1024) as gw:
        yield gw


@pytest.fixture
def sdk(files_gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{files_gateway.base_url}/v1", api_key="unused",
                       max_retries=0, timeout=60) as client:
        yield client


def jsonl(size: int) -> bytes:
    """About ``size`` bytes of batch lines, each different."""
    line = '{{"custom_id": "req-{i}", "method": "POST", "url": "/v1/embeddings", ' \
           '"body": {{"model": "embed", "input": "chunk {i} {pad}"}}}}\n'
    out, i = [], 0
    total = 0
    while total < size:
        encoded = line.format(i=i, pad="x" * (i % 97)).encode()
        out.append(encoded)
        total += len(encoded)
        i += 1
    return b"".join(out)


def bodies_on_disk(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_upload_retrieve_list_download_and_delete_through_the_sdk(
        sdk: openai.OpenAI, files_dir: Path) -> None:
    data = jsonl(5 * 1024 * 1024 + 17)
    created = sdk.files.create(file=("rag-chunks.jsonl", data), purpose="batch")
    assert (created.object, created.purpose, created.status) == ("file", "batch", "processed")
    assert (created.bytes, created.filename, created.expires_at) == (
        len(data), "rag-chunks.jsonl", None)
    assert created.id.startswith("file-")
    assert sdk.files.retrieve(created.id) == created
    downloaded = sdk.files.content(created.id).content
    assert hashlib.sha256(downloaded).hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(downloaded) == len(data)
    assert created.id in bodies_on_disk(files_dir)

    deleted = sdk.files.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "file")
    assert created.id not in bodies_on_disk(files_dir)
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.files.content(created.id)


def test_an_expiry_asked_for_through_the_sdk_sets_expires_at(sdk: openai.OpenAI) -> None:
    created = sdk.files.create(file=("e.jsonl", b"{}\n"), purpose="batch",
                               expires_after={"anchor": "created_at", "seconds": 7200})
    assert created.expires_at == created.created_at + 7200
    assert sdk.files.retrieve(created.id).expires_at == created.expires_at
    sdk.files.delete(created.id)


def test_list_pages_newest_first_with_the_sdk_cursor(sdk: openai.OpenAI) -> None:
    ids = [sdk.files.create(file=(f"{i}.jsonl", jsonl(100)), purpose="batch").id
           for i in range(5)]
    first = sdk.files.list(limit=2, purpose="batch")
    assert [f.id for f in first.data] == [ids[4], ids[3]]
    assert first.has_more is True
    walked = [f.id for f in sdk.files.list(limit=2, purpose="batch")]  # auto-paginates
    assert walked[:5] == list(reversed(ids))
    # Deleting while iterating (a common clean-up loop) must not break the cursor.
    for file in sdk.files.list(limit=2):
        sdk.files.delete(file.id)
    assert sdk.files.list().data == []


def test_another_owners_file_is_404(sdk: openai.OpenAI, files_gateway: GatewayProcess,
                                    redis_client: redis.Redis, files_dir: Path) -> None:
    keys = Keys(files_gateway.prefix)  # type: ignore[attr-defined]
    theirs = FileService(FileCatalog(redis_client, keys), LocalDirectoryStore(files_dir)).write(
        [b'{"custom_id": "x"}\n'], filename="theirs.jsonl", purpose=FilePurpose.BATCH,
        owner="another-owner")
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.files.retrieve(theirs.id)
    assert caught.value.body["param"] == "id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        sdk.files.content(theirs.id)
    with pytest.raises(openai.NotFoundError):
        sdk.files.delete(theirs.id)
    assert theirs.id not in [f.id for f in sdk.files.list()]


def test_refusals_come_back_as_the_sdks_own_errors(sdk: openai.OpenAI,
                                                    files_dir: Path) -> None:
    before = bodies_on_disk(files_dir)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.files.create(file=("a.jsonl", b""), purpose="batch")
    assert caught.value.code == "empty_file"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
    assert caught.value.param == "purpose"
    with pytest.raises(openai.APIStatusError) as too_big:
        sdk.files.create(file=("big.jsonl", b"x" * (MAX_FILE_BYTES + 1)), purpose="batch")
    assert too_big.value.status_code == 413
    assert too_big.value.code == "file_too_large"
    assert bodies_on_disk(files_dir) == before
    # The connection is still good after a refused upload (its rest was drained).
    assert sdk.files.list(limit=1) is not None


def test_an_upload_cut_off_mid_body_leaves_no_record_and_no_file(
        files_gateway: GatewayProcess, redis_client: redis.Redis, files_dir: Path) -> None:
    prefix = files_gateway.prefix  # type: ignore[attr-defined]
    before_keys = keys_under(redis_client, f"{prefix}:file")
    before = bodies_on_disk(files_dir)
    body = multipart(("purpose", b"batch", None), ("file", jsonl(2 * 1024 * 1024), "cut.jsonl"))
    head = (f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", files_gateway.port)) as conn:
        conn.sendall(head.encode() + body[:len(body) // 2])
        time.sleep(0.5)  # the server is now writing the part it got
        assert len(bodies_on_disk(files_dir)) == len(before) + 1  # the temporary body
    deadline = time.monotonic() + 10
    while bodies_on_disk(files_dir) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bodies_on_disk(files_dir) == before
    assert keys_under(redis_client, f"{prefix}:file") == before_keys
