from pathlib import Path

import pytest

from api.wsgi import app_from_env

CONFIG = "model_list:\n  - model_name: m\n    litellm_params: {model: openai/m, api_base: http://u/v1}\n"


def test_wsgi_factory_reads_the_config_named_in_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    monkeypatch.setenv("BATCHGATE_CONFIG", str(path))
    app = app_from_env()
    assert app.test_client().get("/v1/models").get_json()["data"][0]["id"] == "m"
    app.extensions["batchgate.gateway"].close()
