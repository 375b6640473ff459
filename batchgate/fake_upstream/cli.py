"""``batchgate fake-upstream``: the fake OpenAI-compatible upstream as a command.

Options other than --host/--port/--config/--ready-file set fields of the ``defaults`` block,
over the file's values. Exit status 2 on a bad option or configuration file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from batchgate.errors import ConfigError
from batchgate.fake_upstream.server import serve
from batchgate.fake_upstream.settings import (
    FakeSettings,
    load_settings,
    parse_settings,
    with_default_overrides,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001


def build_settings(config_file: Path | None, overrides: dict[str, Any]) -> FakeSettings:
    """Settings from the optional file, with command-line defaults on top."""
    if config_file is not None:
        return load_settings(config_file, overrides=overrides)
    return with_default_overrides(parse_settings({}), overrides)


@click.command("fake-upstream")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Interface to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to bind; 0 picks a free one (see --ready-file).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="YAML or JSON file: {defaults: {...}, models: {...}}.")
@click.option("--latency-ms", type=click.FloatRange(min=0), help="Fixed latency per request.")
@click.option("--jitter-ms", type=click.FloatRange(min=0), help="Uniform extra latency.")
@click.option("--embedding-dim", type=click.IntRange(min=1), help="Embedding dimension.")
@click.option("--max-inputs", type=click.IntRange(min=1), help="Embedding inputs per request.")
@click.option("--rpm", type=click.IntRange(min=1), help="Requests per minute, per model.")
@click.option("--tpm", type=click.IntRange(min=1), help="Tokens per minute, per model.")
@click.option("--api-key", envvar="FAKE_UPSTREAM_API_KEY",
              help="Require this key (Bearer or api-key header). Env: FAKE_UPSTREAM_API_KEY.")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Once listening, write the bound port to this file.")
def fake_upstream_command(
    host: str, port: int, config_file: Path | None, latency_ms: float | None,
    jitter_ms: float | None, embedding_dim: int | None, max_inputs: int | None,
    rpm: int | None, tpm: int | None, api_key: str | None, ready_file: Path | None,
) -> None:
    """Run a fake OpenAI-compatible upstream: deterministic answers, injectable failures."""
    given = {"latency_ms": latency_ms, "jitter_ms": jitter_ms, "embedding_dim": embedding_dim,
             "max_inputs": max_inputs, "rpm": rpm, "tpm": tpm, "api_key": api_key}
    overrides = {name: value for name, value in given.items() if value is not None}
    try:
        settings = build_settings(config_file, overrides)
    except ConfigError as exc:
        raise click.BadParameter(exc.message, param_hint="--config") from exc
    serve(host, port, settings, ready_file)
