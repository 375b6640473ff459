"""The OpenAPI document: every served route is in it, it is a valid OpenAPI 3.0 document,
and it is public like LiteLLM's while every other route keeps its key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask

from api.auth import PUBLIC_PATHS
from api.openapi import build_spec, openapi_path, undocumented_endpoints
from api.openapi_operations import OPERATIONS


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(master_key="sk-master")


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_served_route_is_documented(app: Flask) -> None:
    missing = undocumented_endpoints(app)
    assert not missing, (f"routes with no entry in api/openapi_operations.py OPERATIONS: "
                         f"{missing}: add one per endpoint name")


def test_every_method_of_every_rule_is_in_the_document(app: Flask) -> None:
    paths = build_spec(app)["paths"]
    for rule in app.url_map.iter_rules():
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            operation = paths[openapi_path(rule)][method.lower()]
            assert "x-undocumented" not in operation, rule.rule


def test_the_table_names_no_route_that_is_gone(app: Flask) -> None:
    served = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert set(OPERATIONS) <= served


def test_the_document_is_valid_openapi_and_every_ref_resolves(app: Flask) -> None:
    spec = build_spec(app)
    schemathesis.openapi.from_dict(spec).validate()
    for ref in set(_refs(spec)):
        node: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]


def test_request_bodies_come_from_the_validating_schemas(app: Flask) -> None:
    spec = build_spec(app)
    schemas = spec["components"]["schemas"]
    assert set(schemas["ChatCompletionRequest"]["required"]) == {"model", "messages"}
    assert schemas["BatchCreateRequest"]["additionalProperties"] is False
    assert schemas["QueueSubmission"]["properties"]["metadata"]["maxProperties"] == 16
    upload = spec["paths"]["/v1/files"]["post"]["requestBody"]["content"]
    assert list(upload) == ["multipart/form-data"]


def test_only_the_public_paths_are_documented_without_a_key(app: Flask) -> None:
    spec = build_spec(app)
    assert spec["security"] == [{"bearer": []}, {"api-key": []}]
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            assert (operation.get("security") == []) == (path in PUBLIC_PATHS), path
            assert ("401" in operation["responses"]) == (path not in PUBLIC_PATHS), path


def test_document_and_docs_page_are_served_without_a_key(app: Flask) -> None:
    client = app.test_client()
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.get_json()["openapi"] == "3.0.3"
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert docs.content_type.startswith("text/html")
    assert b"/openapi.json" in docs.data
    assert client.get("/v1/models").status_code == 401


def test_no_static_route_is_served(app: Flask) -> None:
    assert app.test_client().get("/static/x", headers={
        "Authorization": "Bearer sk-master"}).status_code == 404
