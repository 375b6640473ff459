"""Batch requests: the shared check, the fast path's agreement with the schemas, items."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchgate.errors import ModelNotFoundError, RequestError
from workers import batch_lines
from workers.batch_lines import BATCH_REQUEST, check_body, check_request
from workers.schemas import SCHEMAS


def resolve(model: str) -> list[str]:
    groups = [name.strip() for name in model.split(",")]
    if "missing" in groups:
        raise ModelNotFoundError("The model 'missing' does not exist", param="model")
    return groups


def request(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"custom_id": "r1", "method": "POST", "url": "/v1/embeddings",
                           "body": {"model": "embed", "input": "text"}}
    raw.update(changes)
    return raw


def test_a_well_formed_request_is_checked_and_expanded_per_model() -> None:
    checked = check_request(request(body={"model": "a,b", "input": "x"}), "embeddings", resolve)
    assert checked.items() == [("r1::a", "a", {"model": "a", "input": "x"}),
                               ("r1::b", "b", {"model": "b", "input": "x"})]
    single = check_request(request(), "embeddings", resolve)
    assert single.items() == [("r1", "embed", {"model": "embed", "input": "text"})]


@pytest.mark.parametrize(("raw", "code", "param"), [
    ("not an object", "invalid_batch_request", None),
    (request(custom_id=""), "invalid_batch_request", "custom_id"),
    (request(custom_id="x" * 65), "invalid_batch_request", "custom_id"),
    (request(custom_id=7), "invalid_batch_request", "custom_id"),
    (request(method="GET"), "invalid_method", "method"),
    (request(url="/v1/chat/completions"), "invalid_url", "url"),
    (request(extra=1), "invalid_batch_request", "extra"),
    (request(body=[]), "invalid_batch_request", "body"),
    (request(body={"model": "embed"}), "invalid_request_body", "body.input"),
    (request(body={"model": "embed", "input": ""}), "invalid_request_body", "body.input"),
    (request(body={"model": "missing", "input": "x"}), "model_not_found", "body.model"),
    (request(body={"model": "embed", "input": "x", "stream": True}), "invalid_request_body",
     "body.stream"),
])
def test_each_fault_names_its_code_and_field(raw: Any, code: str, param: str | None) -> None:
    with pytest.raises(RequestError) as caught:
        check_request(raw, "embeddings", resolve)
    assert caught.value.code == code
    assert caught.value.param == param
    assert caught.value.message


texts = st.one_of(st.text(max_size=5), st.integers(), st.none(), st.lists(st.text(max_size=3),
                                                                          max_size=2))
requests = st.fixed_dictionaries(
    {"custom_id": st.one_of(st.text(max_size=70), st.integers())},
    optional={"method": st.sampled_from(["POST", "GET", "post"]),
              "url": st.one_of(st.just("/v1/embeddings"), st.integers()),
              "body": st.one_of(st.fixed_dictionaries(
                  {"model": st.one_of(st.text(max_size=3), st.integers())},
                  optional={"input": texts, "user": texts}), st.integers()),
              "extra": st.integers()})


@given(requests)
def test_the_fast_path_only_accepts_what_the_schemas_accept(raw: dict[str, Any]) -> None:
    if batch_lines._plainly_valid_request(raw):
        BATCH_REQUEST.load(raw)  # must not raise
    body = raw.get("body")
    if isinstance(body, dict) and batch_lines._plain_embedding_model(body) is not None:
        assert SCHEMAS["embeddings"].load(body)["model"] == check_body("embeddings", body)
