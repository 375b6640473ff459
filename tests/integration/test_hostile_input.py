"""Hostile input on every endpoint of a real batchgate (gunicorn, Redis, Celery worker):
malformed and deeply nested JSON, wrong types, oversized bodies, huge ids, CR/LF in metadata
and webhook URLs, path tricks in uploaded file names, unicode oddities.

Each is answered with OpenAI's envelope ``{"error": {message, type, param, code}}`` and the
right status, and leaves nothing behind: no job, file record, idempotency claim or key in
Redis, no body in the file store, nothing written outside it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.integration.keyed_service import AUTH, keyed_queue_service
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import GatewayProcess
from tests.support.redis_scan import keys_under

pytestmark = pytest.mark.integration

MAX_REQUEST = 256 * 1024
MAX_FILE = 512 * 1024
CHAT = {"model": "gpt-a", "messages": [{"role": "user", "content": "hi"}]}
JSON_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/moderations",
               "/queue/requests", "/queue/request", "/v1/batches", "/key/generate",
               "/key/update", "/key/delete"]
ID_ROUTES = [("GET", "/queue/response/{}"), ("POST", "/queue/jobs/{}/cancel"),
             ("GET", "/queue/jobs/{}/events"), ("GET", "/v1/files/{}"),
             ("GET", "/v1/files/{}/content"), ("DELETE", "/v1/files/{}"),
             ("GET", "/v1/batches/{}"), ("POST", "/v1/batches/{}/cancel"),
             ("GET", "/v1/batches/{}/results"), ("POST", "/v1/batches/{}/retry")]
RECORD_KEY = re.compile(r":(job:\{[^}]+\}|file:[^:]+|idem:.+|vkey:.+)$")
"""Keys that exist only once something was accepted: a job, a file, a claim, a key."""


class Service:
    """The running gateway, its key prefix and file store."""

    def __init__(self, gw: GatewayProcess, prefix: str, files_dir: Path,
                 redis_client: redis.Redis) -> None:
        self.gw, self.prefix, self.files_dir, self.redis = gw, prefix, files_dir, redis_client

    def records(self) -> set[str]:
        return {k for k in keys_under(self.redis, self.prefix) if RECORD_KEY.search(k)}

    def stored(self) -> set[str]:
        return {str(p.relative_to(self.files_dir)) for p in self.files_dir.rglob("*")
                if p.is_file()}


@pytest.fixture(scope="module")
def service(fake_upstream: FakeUpstream, redis_client: redis.Redis,
            redis_url: str) -> Iterator[Service]:
    with keyed_queue_service(fake_upstream, redis_client, redis_url,
                             max_request_bytes=MAX_REQUEST, max_file_bytes=MAX_FILE
                             ) as (gw, prefix, folder):
        yield Service(gw, prefix, folder, redis_client)


@pytest.fixture
def api(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.gw.base_url, headers=AUTH, timeout=30) as client:
        yield client


@pytest.fixture
def untouched(service: Service) -> Iterator[None]:
    """The test's requests must all be refused: no record and no stored body appear."""
    records, stored, logged = service.records(), service.stored(), len(service.gw.log())
    yield
    assert service.records() == records
    assert service.stored() == stored
    assert "Traceback" not in service.gw.log()[logged:]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error object of an envelope answer with ``status``."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return dict(body["error"])


def post_raw(api: httpx.Client, path: str, body: bytes,
             content_type: str = "application/json") -> httpx.Response:
    return api.post(path, content=body, headers={"content-type": content_type})


# -- malformed JSON ---------------------------------------------------------------------------

MALFORMED = {
    "empty": b"",
    "truncated": b'{"model": "gpt-a", "messages": [',
    "trailing garbage": b'{"model": "gpt-a"}{',
    "not an object": b'[{"model": "gpt-a"}]',
    "null": b"null",
    "invalid utf-8": b'{"model": "gpt-\xff\xfe"}',
    "utf-16": json.dumps(CHAT).encode("utf-16"),
    "nested arrays 100k": b"[" * 100_000 + b"]" * 100_000,
    "nested objects 40k": b'{"a":' * 40_000 + b"1" + b"}" * 40_000,
    "nested 100k inside a field": b'{"model": "gpt-a", "messages": ' + b"[" * 100_000,
    "lone surrogate": b'{"model": "gpt-a", "messages": [{"role": "user", '
                      b'"content": "\\ud800"}]}',
    "lone low surrogate in a key": b'{"model": "gpt-a", "\\udc00": 1, "messages": '
                                   b'[{"role": "user", "content": "x"}]}',
    "NaN": b'{"model": "gpt-a", "x": NaN',
}


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_json_is_a_400_invalid_json(api: httpx.Client, route: str,
                                              body: bytes) -> None:
    error = error_of(post_raw(api, route, body), 400)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_json")


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("route", ["/v1/chat/completions", "/queue/requests"])
def test_nesting_that_parses_but_is_deep_is_refused_or_served_never_a_500(
        api: httpx.Client, route: str) -> None:
    for depth in (500, 900, 990, 5000):
        body = (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}], "x": '
                + b"[" * depth + b"]" * depth + b"}")
        response = post_raw(api, route, body)
        # parsed (the unknown model is then a 404) or refused as too deep (400)
        assert error_of(response, response.status_code)["code"] in ("model_not_found",
                                                                   "invalid_json")
        assert response.status_code in (400, 404)


# -- wrong types --------------------------------------------------------------------------

WRONG_TYPES: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/chat/completions", {"model": 1, "messages": [CHAT["messages"]]}, "model"),
    ("/v1/chat/completions", {"model": "gpt-a", "messages": []}, "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": "hi"}, "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": None}]}, "messages.0.role"),
    ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "stream"),
    ("/v1/completions", {"model": "gpt-a", "prompt": {"a": 1}}, "prompt"),
    ("/v1/embeddings", {"model": "embed", "input": [1.5]}, "input"),
    ("/v1/embeddings", {"model": "embed", "input": "x", "dimensions": "8"}, "dimensions"),
    ("/v1/moderations", {"input": 7}, "input"),
    ("/queue/requests", {**CHAT, "priority": "9"}, "priority"),
    ("/queue/requests", {**CHAT, "priority": True}, "priority"),
    ("/queue/requests", {**CHAT, "metadata": ["a"]}, "metadata"),
    ("/queue/requests", {**CHAT, "metadata": {"k": 1}}, "metadata.k.value"),
    ("/queue/requests", {**CHAT, "webhook": "http://x"}, "webhook"),
    ("/queue/requests", {"requests": "all"}, "requests"),
    ("/queue/requests", {"requests": [{"custom_id": 1, "body": CHAT}]},
     "requests[0].custom_id"),
    ("/queue/request", {**CHAT, "completion_window": [5]}, "completion_window"),
    ("/queue/request", {**CHAT, "completion_window": {"h": 1}}, "completion_window"),
    ("/v1/batches", {"input_file_id": 5, "endpoint": "/v1/embeddings"}, "input_file_id"),
    ("/v1/batches", {"input_file_id": "file-x", "endpoint": "/v1/embeddings",
                     "metadata": {"a": ["b"]}}, "metadata.a.value"),
    ("/key/generate", {"models": "gpt-a"}, "models"),
    ("/key/generate", {"rpm_limit": "10"}, "rpm_limit"),
    ("/key/update", {"key": ["sk-x"]}, "key"),
    ("/key/delete", {"keys": "sk-x"}, "keys"),
]


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(("route", "body", "param"), WRONG_TYPES)
def test_wrong_types_are_a_400_naming_the_field(api: httpx.Client, route: str,
                                                body: dict[str, Any], param: str) -> None:
    error = error_of(api.post(route, json=body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error


# -- oversized ----------------------------------------------------------------------------

@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("route", JSON_ROUTES)
def test_a_body_over_max_request_bytes_is_a_413(api: httpx.Client, route: str) -> None:
    body = json.dumps({**CHAT, "pad": "x" * MAX_REQUEST}).encode()
    error = error_of(post_raw(api, route, body), 413)
    assert error["code"] == "request_too_large"


@pytest.mark.usefixtures("untouched")
def test_a_chunked_body_over_max_request_bytes_is_a_413(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "gpt-a", "pad": "'
        for _ in range(MAX_REQUEST // 1024 + 8):
            yield b"x" * 1024
        yield b'"}'

    response = api.post("/queue/requests", content=chunks(),
                        headers={"content-type": "application/json"})
    assert error_of(response, 413)["code"] == "request_too_large"


@pytest.mark.usefixtures("untouched")
def test_an_upload_over_max_file_bytes_is_a_413_and_leaves_no_partial(
        api: httpx.Client, service: Service) -> None:
    big = b'{"a": 1}\n' * (MAX_FILE // 9 + 100)
    response = api.post("/v1/files", data={"purpose": "batch"},
                        files={"file": ("big.jsonl", big)})
    assert error_of(response, 413)["code"] == "file_too_large"

    def streamed() -> Iterator[bytes]:  # no Content-Length: caught while it streams
        boundary = b"--b0undary"
        yield (boundary + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
               + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
               b'filename="big.jsonl"\r\n\r\n')
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]
        yield b"\r\n" + boundary + b"--\r\n"

    response = api.post("/v1/files", content=streamed(),
                        headers={"content-type": "multipart/form-data; boundary=b0undary"})
    assert error_of(response, 413)["code"] == "file_too_large"
    assert not any(service.files_dir.glob(".partial/*"))


@pytest.mark.usefixtures("untouched")
def test_an_inline_batch_over_max_batch_requests_is_a_413(api: httpx.Client) -> None:
    lines = [{"custom_id": str(i), "body": {"model": "gpt-a", "prompt": "x"}}
             for i in range(2001)]
    response = api.post("/queue/requests", json={"endpoint": "/v1/completions",
                                                 "requests": lines})
    if response.status_code == 413 and error_of(response, 413)["code"] == "request_too_large":
        return  # the body limit came first: still a 413 envelope
    assert error_of(response, 413)["param"] == "requests"


# -- huge ids, header injection -------------------------------------------------------------

@pytest.mark.usefixtures("untouched")
def test_a_huge_custom_id_is_a_400(api: httpx.Client) -> None:
    response = api.post("/queue/requests", json={"requests": [
        {"custom_id": "x" * 50_000, "body": CHAT}]})
    assert error_of(response, 400)["param"] == "requests[0].custom_id"


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("method_path", ID_ROUTES, ids=[p for _, p in ID_ROUTES])
@pytest.mark.parametrize("job_id", ["x" * 3000, "..%2F..%2Fetc%2Fpasswd", "%00",
                                    "%ED%A0%80", "%E2%80%AEfile-abc", "job_%0D%0Ax"])
def test_a_strange_id_in_the_path_is_a_404(api: httpx.Client, method_path: tuple[str, str],
                                           job_id: str) -> None:
    method, path = method_path
    response = api.request(method, path.format(job_id))
    assert error_of(response, 404)["type"] == "invalid_request_error"


CRLF = "a\r\nX-Injected: 1"


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(("route", "body", "param"), [
    ("/queue/requests", {**CHAT, "metadata": {"k": CRLF}}, "metadata"),
    ("/queue/requests", {**CHAT, "metadata": {CRLF: "v"}}, "metadata"),
    ("/queue/requests", {**CHAT, "metadata": {"k": "nul\u0000"}}, "metadata"),
    ("/v1/batches", {"input_file_id": "file-x", "endpoint": "/v1/embeddings",
                     "metadata": {"k": CRLF}}, "metadata"),
    ("/queue/requests", {**CHAT, "webhook": {"url": f"http://127.0.0.1/{CRLF}"}},
     "webhook.url"),
    ("/queue/requests", {**CHAT, "webhook": {"url": "http://127.0.0.1/\u0000"}},
     "webhook.url"),
    ("/queue/requests", {**CHAT, "webhook": {"url": f"http://exa{CRLF}mple.com/"}},
     "webhook.url"),
    ("/key/generate", {"key_alias": CRLF}, "key_alias"),
])
def test_cr_lf_and_nul_in_metadata_and_webhook_urls_are_a_400(
        api: httpx.Client, route: str, body: dict[str, Any], param: str) -> None:
    assert error_of(api.post(route, json=body), 400)["param"] == param


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tinside"])
def test_a_bad_idempotency_key_is_a_400(api: httpx.Client, key: str) -> None:
    response = api.post("/queue/requests", json=CHAT, headers={"Idempotency-Key": key})
    assert error_of(response, 400)["param"] == "Idempotency-Key"


@pytest.mark.usefixtures("untouched")
def test_malformed_http_is_refused_by_gunicorn_before_batchgate(api: httpx.Client) -> None:
    """A DEL byte in a header, or a request line past 4,094 bytes, never reaches the app:
    gunicorn answers its own 400 / 414 page (not the envelope), and never a 5xx."""
    bad_header = api.post("/queue/requests", json=CHAT, headers={"Idempotency-Key": "k\x7f"})
    assert bad_header.status_code == 400
    long_line = api.get("/queue/response/" + "x" * 5000)
    assert long_line.status_code == 414


# -- uploads: names, bodies, forms --------------------------------------------------------

def _multipart(filename: bytes, content: bytes = b'{"a": 1}\n') -> bytes:
    return (b'--XyZ\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="' + filename
            + b'"\r\nContent-Type: application/jsonl\r\n\r\n' + content + b"\r\n--XyZ--\r\n")


@pytest.mark.parametrize(("raw_name", "shown"), [
    (b"../../etc/passwd", "passwd"),
    (b"/etc/cron.d/evil", "evil"),
    (b"..\\\\..\\\\Windows\\\\win.ini", "win.ini"),  # quoted-string escapes
    (b"a\x00b.jsonl", None),
    (b"..", ""),
    (b"in\r\nput.jsonl", None),  # a line break ends the part header: refused
    ("\u202eln.sj\u200b.jsonl".encode(), "ln.sj.jsonl"),
    (b"\xed\xa0\x80\xff.jsonl", None),
    (b"x" * 300 + b".jsonl", None),
])
def test_uploaded_file_names_never_reach_the_disk(api: httpx.Client, service: Service,
                                                  raw_name: bytes, shown: str | None) -> None:
    """A name is cut to a safe last component, or the form is refused (None: either)."""
    outside = service.files_dir.parent
    before, records = set(outside.iterdir()), service.records()
    response = post_raw(api, "/v1/files", _multipart(raw_name),
                        "multipart/form-data; boundary=XyZ")
    assert set(outside.iterdir()) == before
    if response.status_code != 200:
        assert shown is None, response.text
        error_of(response, 400)
        assert service.records() == records
        assert not any(service.files_dir.glob(".partial/*"))
        return
    record = response.json()
    name = record["filename"]
    if shown is not None:
        assert name == shown
    assert not set(name) & {"/", "\\", "\x00", "\r", "\n"}
    name.encode("utf-8")  # valid text: no lone surrogate made it through
    assert record["id"] in service.stored()  # the body is stored under the id only
    assert all(Path(service.files_dir, p).resolve().is_relative_to(service.files_dir.resolve())
               for p in service.stored())
    assert api.get(f"/v1/files/{record['id']}").json()["filename"] == name
    api.delete(f"/v1/files/{record['id']}").raise_for_status()


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(("body", "content_type", "code"), [
    (json.dumps({"purpose": "batch"}).encode(), "application/json", "invalid_content_type"),
    (b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch",
     "multipart/form-data; boundary=XyZ", "invalid_multipart"),
    (_multipart(b"a.jsonl").replace(b"batch", b"fine-tune"),
     "multipart/form-data; boundary=XyZ", "invalid_purpose"),
    (_multipart(b"a.jsonl", b""), "multipart/form-data; boundary=XyZ", "empty_file"),
    (_multipart(b"a.jsonl").replace(b"batch", b"\xff\xfe"),
     "multipart/form-data; boundary=XyZ", None),
])
def test_a_bad_upload_form_is_a_400_and_stores_nothing(
        api: httpx.Client, service: Service, body: bytes, content_type: str,
        code: str | None) -> None:
    error = error_of(post_raw(api, "/v1/files", body, content_type), 400)
    if code is not None:
        assert error["code"] == code
    assert not any(service.files_dir.glob(".partial/*"))


# -- hostile batch input files: the batch fails, it is never stuck -------------------------

def _batch_of(api: httpx.Client, content: bytes) -> dict[str, Any]:
    file_id = api.post("/v1/files", data={"purpose": "batch"},
                       files={"file": ("in.jsonl", content)}).raise_for_status().json()["id"]
    batch = api.post("/v1/batches", json={"input_file_id": file_id,
                                          "endpoint": "/v1/chat/completions",
                                          "completion_window": "24h"})
    batch.raise_for_status()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = api.get(f"/v1/batches/{batch.json()['id']}").json()
        if found["status"] in ("failed", "completed"):
            return dict(found)
        time.sleep(0.2)
    raise AssertionError(f"batch stuck: {found}")


def _line(custom_id: str = "a") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": CHAT}


@pytest.mark.parametrize(("content", "code"), [
    (b"[" * 100_000 + b"\n", "invalid_json_line"),
    (b'{"custom_id": "\\ud800", "method": "POST", "url": "/v1/chat/completions", '
     b'"body": {"model": "gpt-a", "messages": [{"role": "user", "content": "x"}]}}\n',
     "invalid_json_line"),
    (b'{"custom_id": "a\xff"}\n', "invalid_encoding"),
    (json.dumps(_line("x" * 10_000)).encode() + b"\n", "invalid_batch_request"),
    ((json.dumps(_line()) + "\n").encode() * 2, "duplicate_custom_id"),
])
def test_a_hostile_batch_file_fails_the_batch_with_its_line_error(
        api: httpx.Client, service: Service, content: bytes, code: str) -> None:
    batch = _batch_of(api, content)
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][0]["code"] == code
    assert "Traceback" not in service.gw.log()


# -- unicode that is fine stays fine --------------------------------------------------------

def test_surrogate_pairs_bidi_and_zero_width_text_are_accepted(api: httpx.Client,
                                                               service: Service) -> None:
    pair = b'{"model": "gpt-a", "messages": [{"role": "user", "content": "\\ud83d\\ude00 '
    body = pair + b'\xe2\x80\xae\xe2\x80\x8b \xf0\x9f\x98\x80"}], "metadata": {"k": "\\u202e"}}'
    response = post_raw(api, "/queue/requests", body)
    assert response.status_code == 202, response.text
    assert response.json()["metadata"] == {"k": "\u202e"}
    sync = api.post("/v1/chat/completions", json={**CHAT, "messages": [
        {"role": "user", "content": "\U0001f600 \u202e"}]})
    assert sync.status_code == 200
    assert "Traceback" not in service.gw.log()


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("model", ["gpt-a\u200b", "\u202egpt-a", "gpt\u0000a",
                                   "\uff47\uff50\uff54-a"])
def test_lookalike_model_names_are_a_404_model_not_found(api: httpx.Client,
                                                         model: str) -> None:
    error = error_of(api.post("/v1/chat/completions", json={**CHAT, "model": model}), 404)
    assert error["code"] == "model_not_found"
