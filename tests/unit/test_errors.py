import pytest

from batchgate.errors import (
    BatchgateError,
    ConfigError,
    ModelNotFoundError,
    RateLimitedError,
    UpstreamTimeoutError,
)


def test_envelope_has_exactly_openais_four_fields() -> None:
    error = ModelNotFoundError("The model 'x' does not exist", param="model")
    assert error.envelope() == {"error": {"message": "The model 'x' does not exist",
                                          "type": "invalid_request_error", "param": "model",
                                          "code": "model_not_found"}}
    assert error.status == 404


@pytest.mark.parametrize(("seconds", "header"), [(0.2, "1"), (1.0, "1"), (1.01, "2"), (30, "30")])
def test_retry_after_is_whole_seconds_never_sooner_than_asked(seconds: float,
                                                              header: str) -> None:
    assert RateLimitedError("slow", retry_after=seconds).headers() == {"Retry-After": header}


def test_config_error_names_file_entry_and_field() -> None:
    error = ConfigError("expected an integer", source="c.yaml", entry="model_list[0] (a)",
                        field="litellm_params.rpm")
    assert str(error) == "c.yaml: model_list[0] (a): litellm_params.rpm: expected an integer"


def test_status_can_be_overridden_per_instance_without_changing_the_class() -> None:
    assert UpstreamTimeoutError("t").status == 504
    assert BatchgateError("x", status=503).status == 503
    assert BatchgateError("y").status == 500
