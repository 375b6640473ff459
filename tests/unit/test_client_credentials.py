"""Client-side credentials: taken out of bodies, configured, applied, sealed, used by sync
routes (the queue's path runs against real processes in tests/integration)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from flask.testing import FlaskClient

from api.app import create_app
from batchgate.errors import ConfigError, RequestError
from config.api_bases import parse_pattern
from config.keys import Keys
from config.loader import check_config, settings_from_mapping
from config.settings import (
    ClientCredentialsSettings,
    GeneralSettings,
    Provider,
    Secret,
    Settings,
)
from tests.unit.conftest import UPSTREAM_KEY, Upstream, deployment
from workers.batch_lines import check_request
from workers.client_credentials import (
    CALLER_FIELDS,
    ClientCredentials,
    JobCredentials,
    take,
    take_job,
)
from workers.credentialed_client import CredentialedClient, verify
from workers.credentials_store import CredentialStore, seal
from workers.transports import HttpxTransport
from workers.upstream import UpstreamClient, UpstreamReply, UpstreamStream
from workers.webhooks.secretbox import SecretBox

CALLER_KEY = "sk-caller-own-7d1e0c55b9"
ON = ClientCredentialsSettings(enabled=True, allowed_api_bases=(
    parse_pattern("https://api.openai.com/v1"), parse_pattern("https://*.openai.azure.com"),
    parse_pattern("http://127.0.0.1:8123/v1")))
OFF = ClientCredentialsSettings()
CHAT = {"model": "gpt-a", "messages": [{"role": "user", "content": "hello"}]}


def code_of(call: Any, *args: Any) -> str | None:
    with pytest.raises(RequestError) as caught:
        call(*args)
    assert caught.value.status == 400
    return caught.value.code


# -- taking credentials out of a body --------------------------------------------------------

@pytest.mark.parametrize("name", CALLER_FIELDS)
def test_when_off_any_credential_field_is_a_400_naming_it(name: str) -> None:
    body = {**CHAT, name: "https://api.openai.com/v1" if "base" in name else "x"}
    with pytest.raises(RequestError) as caught:
        take(body, OFF)
    assert caught.value.code == "client_side_credentials_disabled"
    assert caught.value.param == name
    assert "client_side_credentials" in caught.value.message
    assert name not in body


def test_when_off_null_fields_are_dropped_and_nothing_is_refused() -> None:
    body = {**CHAT, "api_key": None, "api_base": None}
    assert take(body, OFF) is None
    assert body == CHAT


def test_a_body_without_credentials_is_left_as_it_is() -> None:
    body = dict(CHAT)
    assert take(body, ON) is None
    assert body == CHAT


def test_when_on_the_fields_leave_the_body_and_become_credentials() -> None:
    body = {**CHAT, "api_key": CALLER_KEY, "api_base": "https://api.openai.com/v1/",
            "api_version": "2024-10-21", "temperature": 0}
    got = take(body, ON)
    assert body == {**CHAT, "temperature": 0}
    assert got == ClientCredentials(Secret(CALLER_KEY), "https://api.openai.com/v1",
                                    "2024-10-21")
    assert CALLER_KEY not in repr(got)


def test_base_url_is_an_alias_of_api_base_and_must_agree_with_it() -> None:
    got = take({**CHAT, "base_url": "https://api.openai.com/v1"}, ON)
    assert got is not None
    assert got.api_base == "https://api.openai.com/v1"
    assert code_of(take, {**CHAT, "api_base": "https://api.openai.com/v1",
                          "base_url": "https://x.openai.azure.com"}, ON) \
        == "invalid_client_credentials"


def test_an_api_base_off_the_allow_list_is_invalid_api_base() -> None:
    for base in ("http://169.254.169.254/", "http://127.0.0.1:1/", "https://evil.test/v1",
                 "https://evil@10.0.0.1", "http://2130706433/"):
        assert code_of(take, {**CHAT, "api_key": CALLER_KEY, "api_base": base}, ON) \
            == "invalid_api_base"


def test_user_config_is_refused_even_when_on() -> None:
    body = {**CHAT, "user_config": {"model_list": []}}
    assert code_of(take, body, ON) == "invalid_client_credentials"
    assert "user_config" not in body


@pytest.mark.parametrize("key", ["", "a b", "k\r\nX-Injected: 1", "é", 42, "x" * 5000])
def test_a_malformed_key_is_refused_without_echoing_it(key: object) -> None:
    with pytest.raises(RequestError) as caught:
        take({**CHAT, "api_key": key}, ON)
    assert caught.value.param == "api_key"
    if isinstance(key, str) and key:
        assert key not in caught.value.message


def test_api_version_must_be_a_plain_token() -> None:
    assert code_of(take, {**CHAT, "api_version": "2024&x=1"}, ON) \
        == "invalid_client_credentials"


def test_take_job_strips_the_job_and_every_inline_request() -> None:
    body = {"api_key": CALLER_KEY, "requests": [
        {"custom_id": "a", "body": {**CHAT, "api_key": "sk-own-a"}},
        {"custom_id": "b", "body": dict(CHAT)},
        {"custom_id": "c", "body": {**CHAT, "api_base": "https://r.openai.azure.com"}},
        "not a request",
    ]}
    got = take_job(body, ON)
    text = json.dumps(body)
    for secret in (CALLER_KEY, "sk-own-a", "openai.azure.com"):
        assert secret not in text
    assert got.default == ClientCredentials(Secret(CALLER_KEY))
    assert got.by_request == {0: ClientCredentials(Secret("sk-own-a")),
                              2: ClientCredentials(None, "https://r.openai.azure.com")}
    # Item i came from request origins[i]; a request's own credentials replace the job's.
    assert got.for_items([0, 0, 1, 2]) == {0: got.by_request[0], 1: got.by_request[0],
                                          2: got.default, 3: got.by_request[2]}


def test_take_job_names_the_inline_request_at_fault() -> None:
    body = {"requests": [{"custom_id": "a", "body": dict(CHAT)},
                         {"custom_id": "b", "body": {**CHAT, "api_key": CALLER_KEY}}]}
    with pytest.raises(RequestError) as caught:
        take_job(body, OFF)
    assert caught.value.param == "requests[1].body.api_key"
    assert caught.value.message.startswith("requests[1].body: ")


# -- applying them to a deployment ----------------------------------------------------------

def test_a_key_alone_replaces_the_key_and_keeps_the_deployment_base() -> None:
    d = deployment("gpt-a", "a1", key=UPSTREAM_KEY)
    used = ClientCredentials(Secret(CALLER_KEY)).apply(d)
    assert used.api_key == Secret(CALLER_KEY)
    assert (used.api_base, used.id, used.model) == (d.api_base, d.id, d.model)


def test_a_callers_base_never_gets_the_deployments_key() -> None:
    d = deployment("gpt-a", "a1", key=UPSTREAM_KEY)
    used = ClientCredentials(None, "https://api.openai.com/v1").apply(d)
    assert used.api_base == "https://api.openai.com/v1"
    assert used.api_key is None
    assert used.auth_headers() == {}


def test_azure_takes_the_callers_api_version_and_ollama_gets_v1() -> None:
    azure = deployment("az", "z1", provider=Provider.AZURE, key=UPSTREAM_KEY, model="dep")
    used = ClientCredentials(Secret(CALLER_KEY), "https://r.openai.azure.com",
                             "2025-01-01").apply(azure)
    assert used.url("chat/completions") == ("https://r.openai.azure.com/openai/deployments/"
                                            "dep/chat/completions?api-version=2025-01-01")
    assert used.auth_headers() == {"api-key": CALLER_KEY}
    ollama = deployment("ol", "o1", provider=Provider.OLLAMA)
    assert ClientCredentials(None, "http://127.0.0.1:8123").apply(ollama).api_base \
        == "http://127.0.0.1:8123/v1"


# -- configuration -----------------------------------------------------------------------------

def load(general: dict[str, Any]) -> Settings:
    return settings_from_mapping({"general_settings": general}, source="<test>", env={})


def test_off_by_default() -> None:
    assert load({}).general.client_side_credentials == OFF


def test_the_section_turns_it_on_with_its_allow_list() -> None:
    got = load({"client_side_credentials": {
        "enabled": True, "allowed_api_bases": ["https://api.openai.com/v1",
                                               "https://*.openai.azure.com"]}})
    assert got.general.client_side_credentials == replace(
        ON, allowed_api_bases=ON.allowed_api_bases[:2])


def test_litellms_switch_turns_it_on_with_no_api_base_allowed() -> None:
    got = load({"allow_client_side_credentials": True}).general.client_side_credentials
    assert got == ClientCredentialsSettings(enabled=True)


def test_disagreeing_switches_and_bad_entries_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="disagrees"):
        load({"allow_client_side_credentials": True,
              "client_side_credentials": {"enabled": False}})
    with pytest.raises(ConfigError, match=r"allowed_api_bases\[1\].*credentials"):
        load({"client_side_credentials": {
            "enabled": True, "allowed_api_bases": ["https://ok.test", "https://u@x.test"]}})
    with pytest.raises(ConfigError, match="did you mean 'allowed_api_bases'"):
        load({"client_side_credentials": {"allowed_api_base": []}})


def test_an_allow_list_while_off_is_noted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("general_settings:\n  client_side_credentials:\n"
                    "    allowed_api_bases: [https://api.openai.com/v1]\n")
    _, notes = check_config(path, {})
    assert any("has no effect" in note for note in notes)


# -- the client that calls with them, re-checking at each call ---------------------------------

class Recorder(UpstreamClient):
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed = False

    def send(self, deployment: Any, endpoint: str, payload: bytes) -> UpstreamReply:
        self.sent.append(deployment)
        return UpstreamReply(deployment, 200, {}, b"{}", 0.0)

    def close(self) -> None:
        self.closed = True


def test_the_client_swaps_credentials_in_and_refuses_a_rebound_name_at_call_time() -> None:
    answers = [["20.1.2.3"], ["169.254.169.254"]]
    inner = Recorder()
    client = CredentialedClient(
        inner, ClientCredentials(Secret(CALLER_KEY), "https://res.openai.azure.com"), ON,
        resolve=lambda host, port: answers.pop(0))
    d = deployment("gpt-a", "a1", key=UPSTREAM_KEY)
    assert client.send(d, "chat/completions", b"{}").status == 200
    assert inner.sent[0].api_base == "https://res.openai.azure.com"
    assert inner.sent[0].api_key == Secret(CALLER_KEY)
    refused = client.send(d, "chat/completions", b"{}")  # the name now points inside
    assert refused.status == 400
    assert json.loads(refused.body)["error"]["code"] == "invalid_api_base"
    assert len(inner.sent) == 1
    client.close()
    assert not inner.closed  # the shared client stays open


def test_a_refused_stream_reads_as_a_400_without_a_call() -> None:
    inner = Recorder()
    client = CredentialedClient(inner, ClientCredentials(None, "https://x.openai.azure.com"),
                                ON, resolve=lambda host, port: ["10.0.0.1"])
    opened = client.open_stream(deployment("gpt-a", "a1"), "chat/completions", b"{}")
    assert isinstance(opened, UpstreamStream)
    assert opened.status == 400
    assert b"invalid_api_base" in opened.read()
    assert inner.sent == []


def test_verify_refuses_everything_once_switched_off() -> None:
    assert code_of(verify, ClientCredentials(Secret(CALLER_KEY)), OFF) \
        == "client_side_credentials_disabled"
    assert verify(ClientCredentials(Secret(CALLER_KEY)), ON) is None
    assert verify(ClientCredentials(None, "https://api.openai.com/v1/"), ON) \
        == "https://api.openai.com/v1"


# -- sealing for the queue ---------------------------------------------------------------------

def test_sealed_credentials_are_encrypted_shared_and_read_back_per_item() -> None:
    box = SecretBox(SecretBox.generate_key())
    job_wide, own = ClientCredentials(Secret(CALLER_KEY)), ClientCredentials(Secret("sk-own"))
    fields = seal(box, JobCredentials(job_wide, {1: own, 2: own}), [0, 1, 1, 2, None])
    assert set(fields) == {"*", "1", "2", "3"}
    assert fields["1"] == fields["2"] == fields["3"]  # one token per distinct set
    assert CALLER_KEY not in json.dumps(fields)
    assert "sk-own" not in json.dumps(fields)
    server = fakeredis.FakeRedis(decode_responses=True)
    keys = Keys("t")
    server.hset(keys.credentials("j"), mapping=fields)
    loaded = CredentialStore(server, keys, box).load("j", [0, 1, 3, 4])
    assert loaded == {0: job_wide, 1: own, 3: own, 4: job_wide}
    assert CredentialStore(server, keys, box).load("gone", [0]) is None


def test_items_without_credentials_of_their_own_or_the_jobs_use_the_deployments() -> None:
    box = SecretBox(SecretBox.generate_key())
    fields = seal(box, JobCredentials(None, {1: ClientCredentials(Secret("sk-own"))}),
                  [0, 1])
    assert set(fields) == {"1"}
    server = fakeredis.FakeRedis(decode_responses=True)
    server.hset(Keys("t").credentials("j"), mapping=fields)
    assert CredentialStore(server, Keys("t"), box).load("j", [0, 1]) == {
        0: None, 1: ClientCredentials(Secret("sk-own"))}


# -- the sync routes ---------------------------------------------------------------------------

@pytest.fixture
def sync_client(upstream: Upstream) -> Iterator[FlaskClient]:
    settings = Settings(
        source="<test>",
        deployments=(deployment("gpt-a", "a1", key=UPSTREAM_KEY,
                                base="http://127.0.0.1:8123/v1"),
                     deployment("gpt-b", "b1", base="http://127.0.0.1:8123/v1")),
        general=GeneralSettings(client_side_credentials=ON))
    transport = HttpxTransport(httpx.Client(transport=httpx.MockTransport(upstream)))
    app = create_app(settings, client=UpstreamClient(settings, transport))
    yield app.test_client()
    app.extensions["batchgate.gateway"].close()


def test_sync_call_uses_the_callers_key_and_forwards_no_credential_field(
        sync_client: FlaskClient, upstream: Upstream) -> None:
    response = sync_client.post("/v1/chat/completions", json={**CHAT, "api_key": CALLER_KEY})
    assert response.status_code == 200
    request, sent = upstream.seen[0]
    assert request.headers["authorization"] == f"Bearer {CALLER_KEY}"
    assert sent == {**CHAT, "model": "gpt-a"}
    # The next call without credentials is the deployment's own again.
    assert sync_client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert upstream.seen[1][0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_sync_compare_calls_every_model_with_the_callers_credentials(
        sync_client: FlaskClient, upstream: Upstream) -> None:
    response = sync_client.post("/v1/chat/completions", json={
        **CHAT, "model": "gpt-a,gpt-b", "api_key": CALLER_KEY,
        "api_base": "http://127.0.0.1:8123/v1"})
    assert response.status_code == 200
    assert [r.headers["authorization"] for r, _ in upstream.seen] == [f"Bearer {CALLER_KEY}"] * 2


@pytest.mark.parametrize("base", ["http://169.254.169.254/", "http://127.0.0.1:1/",
                                  "http://10.0.0.1:8123/v1"])
def test_sync_call_to_a_base_off_the_list_is_a_400_and_nothing_is_sent(
        sync_client: FlaskClient, upstream: Upstream, base: str) -> None:
    response = sync_client.post("/v1/chat/completions",
                                json={**CHAT, "api_key": CALLER_KEY, "api_base": base})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_api_base"
    assert CALLER_KEY not in response.get_data(as_text=True)
    assert upstream.seen == []


def test_sync_call_with_the_feature_off_is_a_400_and_nothing_is_sent(
        make_app: Any, upstream: Upstream) -> None:
    client = make_app().test_client()
    for stream in (False, True):
        response = client.post("/v1/chat/completions",
                               json={**CHAT, "api_key": CALLER_KEY, "stream": stream})
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "client_side_credentials_disabled"
    assert upstream.seen == []


def test_a_batch_input_file_line_carrying_credentials_is_refused() -> None:
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {**CHAT, "api_key": CALLER_KEY}}
    with pytest.raises(RequestError) as caught:
        check_request(line, "chat/completions", lambda model: [model])
    assert caught.value.code == "client_side_credentials_unsupported"
    assert caught.value.param == "body.api_key"
    assert CALLER_KEY not in caught.value.message
