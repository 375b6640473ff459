"""The ``batchgate`` command: ``up``, ``fake-upstream``, ``config check``, ``healthcheck``."""

from __future__ import annotations

import json
import logging
import os
import sys
import urllib.error
import urllib.request
from typing import NoReturn

import click

from batchgate import __version__
from batchgate.errors import ConfigError
from config.settings import Settings

EXIT_CONFIG = 2


def _fail_config(exc: ConfigError) -> NoReturn:
    click.echo(f"batchgate: config error: {exc.message}", err=True)
    sys.exit(EXIT_CONFIG)


def _load(path: str | None) -> Settings:
    from config.loader import load_settings

    try:
        return load_settings(path)
    except ConfigError as exc:
        _fail_config(exc)


config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar="BATCHGATE_CONFIG",
    show_envvar=True, help="LiteLLM-style config.yaml.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batchgate")
def main() -> None:
    """batchgate: a queue-based batch completion gateway for LLM deployments."""


@main.command()
@config_option
@click.option("--host", envvar="BATCHGATE_HOST", show_envvar=True, help="Bind address.")
@click.option("--port", type=int, envvar="BATCHGATE_PORT", show_envvar=True,
              help="Bind port [default: 4000].")
@click.option("--num-workers", type=click.IntRange(min=1), envvar="BATCHGATE_NUM_WORKERS",
              show_envvar=True, default=lambda: os.cpu_count() or 1,
              help="gunicorn worker processes [default: CPU count].")
@click.option("--threads", type=click.IntRange(min=1), envvar="BATCHGATE_THREADS",
              show_envvar=True, default=64, show_default=True,
              help="Threads per worker process (gthread only).")
@click.option("--worker-class", type=click.Choice(["gevent", "gthread"]), default="gevent",
              envvar="BATCHGATE_WORKER_CLASS", show_envvar=True, show_default=True,
              help="gunicorn worker class.")
@click.option("--demo", is_flag=True,
              help="With no config: start built-in fake upstreams and serve demo models.")
@click.option("--detailed-debug", is_flag=True, help="Debug logging.")
def up(config_path: str | None, host: str | None, port: int | None, num_workers: int,
       threads: int, worker_class: str, demo: bool, detailed_debug: bool) -> None:
    """Run the gateway under gunicorn."""
    from batchgate.serve import serve

    logging.basicConfig(level=logging.DEBUG if detailed_debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config_path is None and not demo:
        raise click.UsageError("give --config FILE (or BATCHGATE_CONFIG), or --demo")
    upstream = None
    if config_path is None:
        from batchgate.demo import DemoUpstream
        from config.demo import demo_settings

        upstream = DemoUpstream()
        try:
            settings = demo_settings(upstream.base_url)
        except ConfigError as exc:
            upstream.stop()
            _fail_config(exc)
        click.echo(f"demo upstream on {upstream.base_url}; models: "
                   + ", ".join(settings.groups()))
    else:
        settings = _load(config_path)
    bind_host = host or settings.server.host
    bind_port = port if port is not None else settings.server.port
    click.echo(f"batchgate {__version__} serving {len(settings.groups())} model groups on "
               f"http://{bind_host}:{bind_port}")
    try:
        serve(settings, host=bind_host, port=bind_port, workers=num_workers, threads=threads,
              worker_class=worker_class,
              log_level="debug" if detailed_debug else "info")
    finally:
        if upstream is not None:
            upstream.stop()


@main.group()
def config() -> None:
    """Configuration tools."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(path: str) -> None:
    """Load PATH as batchgate would; exit 2 with one clear message if it cannot be used."""
    from config.loader import check_config

    try:
        settings, notes = check_config(path)
    except ConfigError as exc:
        _fail_config(exc)
    click.echo(f"{path}: OK: {len(settings.deployments)} deployments in "
               f"{len(settings.groups())} model groups")
    for name, deployments in settings.groups().items():
        targets = ", ".join(f"{d.provider.value}/{d.model}" for d in deployments)
        click.echo(f"  {name}: {targets}")
    for note in notes:
        click.echo(f"  note: {note}")


@main.command()
@click.option("--url", default="http://127.0.0.1:4000", envvar="BATCHGATE_URL",
              show_envvar=True, show_default=True, help="Base URL of the gateway.")
@click.option("--timeout", type=float, default=5.0, show_default=True)
def healthcheck(url: str, timeout: float) -> None:
    """Exit 0 when the gateway at URL is ready, 1 otherwise (for container healthchecks)."""
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--url")
    request = urllib.request.Request(url.rstrip("/") + "/health/readiness")  # noqa: S310
    key = os.environ.get("BATCHGATE_MASTER_KEY")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        click.echo(f"not ready: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(body))


def _register_fake_upstream() -> None:
    from batchgate.fake_upstream.cli import fake_upstream_command

    main.add_command(fake_upstream_command, "fake-upstream")


_register_fake_upstream()
