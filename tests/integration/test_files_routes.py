"""The Files API through Flask's test client, on a real Redis under a throwaway key prefix."""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from config.settings import FilesSettings, GeneralSettings, Secret, ServerSettings, Settings
from tests.support.redis_scan import delete_under, keys_under
from tests.unit.test_files_storage import BOUNDARY, multipart
from workers.file_service import FileService
from workers.files import FilePurpose, new_file_id

pytestmark = pytest.mark.integration

LIMIT = 4096
MASTER = "sk-master-files"
JSONL = b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'


@pytest.fixture
def prefix() -> Iterator[str]:
    url = os.environ.get("BATCHGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    name = f"bgfiles-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(url, decode_responses=True)
    delete_under(client, name)
    client.close()


@pytest.fixture
def make_app(prefix: str, tmp_path: Path) -> Iterator[Any]:
    apps: list[Flask] = []

    def build(master_key: str | None = None) -> Flask:
        url = os.environ.get("BATCHGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        settings = Settings(
            source="<test>", deployments=(),
            general=GeneralSettings(master_key=Secret(master_key) if master_key else None),
            server=ServerSettings(redis_url=url, key_prefix=prefix, max_request_bytes=1024),
            files=FilesSettings(files_dir=str(tmp_path / "files"), max_file_bytes=LIMIT))
        app = create_app(settings)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["batchgate.gateway"].close()


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app()  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def service(app: Flask) -> FileService:
    return app.extensions["batchgate.runtime"].files  # type: ignore[no-any-return]


def upload(client: FlaskClient, content: bytes = JSONL, *, name: str = "in.jsonl",
           purpose: str = "batch", **extra: Any) -> Any:
    return client.post("/v1/files", data={"purpose": purpose, **extra,
                                          "file": (io.BytesIO(content), name)})


def raw(client: FlaskClient, body: bytes, **kwargs: Any) -> Any:
    return client.post("/v1/files", data=body, **kwargs,
                       content_type=f"multipart/form-data; boundary={BOUNDARY.decode()}")


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def stored(app: Flask) -> list[str]:
    """Every body and temporary body on disk."""
    root = service(app).store.root  # type: ignore[attr-defined]
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def file_keys(app: Flask, prefix: str) -> list[str]:
    return keys_under(service(app).catalog.redis, f"{prefix}:file")


def test_upload_retrieve_download_delete(client: FlaskClient, app: Flask, prefix: str) -> None:
    created = upload(client, name="../../etc/passwd")
    assert created.status_code == 200
    body = created.get_json()
    assert body["filename"] == "passwd"  # the last path component only (RFC 2183, 2.3)
    assert (body["object"], body["bytes"], body["purpose"]) == ("file", len(JSONL), "batch")
    assert abs(body["created_at"] - time.time()) < 5
    assert stored(app) == [body["id"]]  # stored under the id, never the client's name
    assert client.get(f"/v1/files/{body['id']}").get_json() == body
    assert client.get(f"/files/{body['id']}").get_json() == body
    content = client.get(f"/v1/files/{body['id']}/content")
    assert (content.status_code, content.data) == (200, JSONL)
    assert content.headers["Content-Length"] == str(len(JSONL))
    deleted = client.delete(f"/v1/files/{body['id']}")
    assert deleted.get_json() == {"id": body["id"], "object": "file", "deleted": True}
    assert stored(app) == []
    for path in (f"/v1/files/{body['id']}", f"/v1/files/{body['id']}/content"):
        assert error_of(client.get(path), 404)["param"] == "id"
    assert error_of(client.delete(f"/v1/files/{body['id']}"), 404)["code"] == "not_found"


def test_uploads_up_to_max_file_bytes_pass_although_max_request_bytes_is_smaller(
        client: FlaskClient) -> None:
    assert upload(client, b"x" * LIMIT).status_code == 200
    assert error_of(client.post("/v1/embeddings", data=b"x" * 2000,
                                content_type="application/json"), 413)


def test_an_upload_over_the_limit_is_413_and_leaves_nothing(client: FlaskClient, app: Flask,
                                                            prefix: str) -> None:
    error = error_of(upload(client, b"x" * (LIMIT + 1)), 413)
    assert error["code"] == "file_too_large"
    assert error_of(raw(client, b"x" * (LIMIT + 200_000)), 413)["code"] == "file_too_large"
    assert stored(app) == []
    assert file_keys(app, prefix) == []


@pytest.mark.parametrize(("form", "param", "code"), [
    ({"purpose": "fine-tune"}, "purpose", "invalid_purpose"),
    ({"purpose": "batch_output"}, "purpose", "invalid_purpose"),
    ({"purpose": ""}, "purpose", None),
    ({"expires_after[anchor]": "created_at"}, "expires_after.seconds", None),
    ({"expires_after[anchor]": "now", "expires_after[seconds]": "3600"},
     "expires_after.anchor", None),
    ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "60"},
     "expires_after.seconds", None),
])
def test_bad_fields_are_400_naming_the_field(client: FlaskClient, app: Flask,
                                             form: dict[str, str], param: str,
                                             code: str | None) -> None:
    fields = {"purpose": "batch", **form}
    error = error_of(upload(client, purpose=fields.pop("purpose"), **fields), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code
    assert stored(app) == []


@pytest.mark.parametrize(("body", "param", "code"), [
    (multipart(("purpose", b"batch", None)), "file", None),
    (multipart(("file", JSONL, "a.jsonl")), "purpose", None),
    (multipart(("purpose", b"batch", None), ("file", b"", "a.jsonl")), "file", "empty_file"),
    (multipart(("purpose", b"batch", None), ("file", JSONL, "a.jsonl"))[:-30], None,
     "invalid_multipart"),
])
def test_incomplete_forms_are_400(client: FlaskClient, app: Flask, prefix: str, body: bytes,
                                  param: str | None, code: str | None) -> None:
    error = error_of(raw(client, body), 400)
    assert error["param"] == param
    if code:
        assert error["code"] == code
    assert stored(app) == []
    assert file_keys(app, prefix) == []


def test_a_body_that_is_not_multipart_is_400(client: FlaskClient) -> None:
    error = error_of(client.post("/v1/files", json={"purpose": "batch"}), 400)
    assert error["code"] == "invalid_content_type"
    assert error_of(client.post("/v1/files", data="x", content_type="text/plain"), 400)


def test_a_client_that_disconnects_mid_upload_leaves_no_record_and_no_file(
        client: FlaskClient, app: Flask, prefix: str) -> None:
    body = multipart(("purpose", b"batch", None), ("file", JSONL * 50, "a.jsonl"))
    half = io.BytesIO(body[:len(body) // 2])
    response = client.post("/v1/files", input_stream=half, content_length=len(body),
                           content_type=f"multipart/form-data; boundary={BOUNDARY.decode()}")
    assert error_of(response, 400)["code"] in ("incomplete_body", "invalid_multipart")
    assert stored(app) == []
    assert file_keys(app, prefix) == []


@pytest.mark.parametrize("file_id", ["file-nope", "..", "..%2F..%2Fetc%2Fpasswd",
                                     "file-" + "A" * 24, "%00", "a" * 500, "file-%0d%0aX"])
def test_unknown_or_odd_ids_are_404(client: FlaskClient, file_id: str) -> None:
    for path in (f"/v1/files/{file_id}", f"/v1/files/{file_id}/content"):
        assert error_of(client.get(path), 404)
    assert error_of(client.delete(f"/v1/files/{file_id}"), 404)


def test_files_of_another_owner_are_404_but_the_master_key_sees_them(
        make_app: Any) -> None:
    app = make_app(master_key=MASTER)
    other = service(app).write([b"theirs\n"], filename="o.jsonl", purpose=FilePurpose.BATCH,
                               owner="someone-else")
    master = app.test_client()
    headers = {"Authorization": f"Bearer {MASTER}"}
    assert master.get(f"/v1/files/{other.id}", headers=headers).get_json()["id"] == other.id
    assert master.get("/v1/files", headers=headers).get_json()["data"] == []
    open_app = make_app()
    anonymous = open_app.test_client()
    for path in (f"/v1/files/{other.id}", f"/v1/files/{other.id}/content"):
        assert error_of(anonymous.get(path), 404)
    assert error_of(anonymous.delete(f"/v1/files/{other.id}"), 404)
    assert anonymous.get("/v1/files").get_json()["data"] == []
    assert error_of(master.get(f"/v1/files/{other.id}"), 401)


def test_list_is_newest_first_paginated_and_filtered_by_purpose(
        client: FlaskClient, app: Flask) -> None:
    ids = [upload(client, name=f"{i}.jsonl").get_json()["id"] for i in range(5)]
    output = service(app).write([b"out\n"], filename="out.jsonl",
                                purpose=FilePurpose.BATCH_OUTPUT, owner="anonymous")
    listed = client.get("/v1/files").get_json()
    assert [f["id"] for f in listed["data"]] == [output.id, *reversed(ids)]
    assert (listed["object"], listed["has_more"]) == ("list", False)
    assert (listed["first_id"], listed["last_id"]) == (output.id, ids[0])
    page = client.get("/v1/files?purpose=batch&limit=2").get_json()
    assert [f["id"] for f in page["data"]] == [ids[4], ids[3]]
    assert page["has_more"] is True
    page = client.get(f"/v1/files?purpose=batch&limit=2&after={page['last_id']}").get_json()
    assert [f["id"] for f in page["data"]] == [ids[2], ids[1]]
    page = client.get(f"/v1/files?purpose=batch&limit=2&after={page['last_id']}").get_json()
    assert ([f["id"] for f in page["data"]], page["has_more"]) == ([ids[0]], False)
    ascending = client.get("/v1/files?order=asc&limit=2").get_json()
    assert [f["id"] for f in ascending["data"]] == ids[:2]
    only = client.get("/v1/files?purpose=batch_output").get_json()
    assert [f["id"] for f in only["data"]] == [output.id]
    empty = client.get("/v1/files?purpose=nothing").get_json()
    assert empty == {"object": "list", "data": [], "has_more": False, "first_id": None,
                     "last_id": None}


def test_a_cursor_naming_a_file_deleted_mid_iteration_still_pages_on(
        client: FlaskClient) -> None:
    ids = [upload(client).get_json()["id"] for _ in range(4)]
    page = client.get("/v1/files?limit=2").get_json()
    for file in page["data"]:
        assert client.delete(f"/v1/files/{file['id']}").status_code == 200
    rest = client.get(f"/v1/files?limit=2&after={page['last_id']}").get_json()
    assert [f["id"] for f in rest["data"]] == [ids[1], ids[0]]
    assert [f["id"] for f in client.get("/v1/files").get_json()["data"]] == [ids[1], ids[0]]


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "limit=x", "order=up",
                                   f"after={new_file_id()}", "after=../x"])
def test_bad_list_arguments_are_refused(client: FlaskClient, query: str) -> None:
    response = client.get(f"/v1/files?{query}")
    assert response.status_code in (400, 404)
    assert error_of(response, response.status_code)["param"] in ("limit", "order", "after")


def test_an_expiring_upload_shows_expires_at_and_is_gone_after_it(
        client: FlaskClient, app: Flask, prefix: str) -> None:
    body = upload(client, **{"expires_after[anchor]": "created_at",
                             "expires_after[seconds]": "3600"}).get_json()
    assert body["expires_at"] == body["created_at"] + 3600
    files = service(app)
    assert files.expire_due(now=time.time()) == 0
    assert files.catalog.get(body["id"], now=body["expires_at"]) is None
    assert files.expire_due(now=body["expires_at"] + 1) == 1
    assert error_of(client.get(f"/v1/files/{body['id']}"), 404)
    assert stored(app) == []
    assert client.get("/v1/files").get_json()["data"] == []
    assert file_keys(app, prefix) == []  # the listing pruned the expired file's entry


def test_files_made_by_batchgate_stream_in_and_their_lines_stream_out(app: Flask) -> None:
    files = service(app)
    lines = [f'{{"custom_id": "{i}"}}\n'.encode() for i in range(1000)]
    record = files.write(iter(lines), filename="batch_out.jsonl",
                         purpose=FilePurpose.BATCH_OUTPUT, owner="anonymous")
    assert record.bytes == sum(map(len, lines))
    assert list(files.store.lines(record.id)) == lines


def test_a_body_without_a_length_is_capped_while_it_streams(client: FlaskClient,
                                                            app: Flask) -> None:
    junk = io.BytesIO(b"--" + BOUNDARY + b"\r\n" + b"x" * 200_000)
    response = client.post("/v1/files", input_stream=junk,
                           content_type=f"multipart/form-data; boundary={BOUNDARY.decode()}")
    assert error_of(response, 413)["code"] == "file_too_large"
    assert stored(app) == []
