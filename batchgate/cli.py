"""The ``batchgate`` command: ``up``, ``worker``, ``beat``, ``config check``, ``healthcheck``,
``fake-upstream``, ``test-async``, ``embed`` and ``batch submit|status|results|cancel``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import click

from batchgate import __version__
from batchgate.errors import ConfigError
from config.paths import default_files_dir
from config.settings import Settings

EXIT_CONFIG = 2


def _fail_config(exc: ConfigError) -> NoReturn:
    click.echo(f"batchgate: config error: {exc.message}", err=True)
    sys.exit(EXIT_CONFIG)


def _load(path: str | None, env: dict[str, str] | None = None) -> Settings:
    from config.loader import load_settings

    try:
        return load_settings(path, env)
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
@click.option("--queue-workers", type=click.IntRange(min=0), default=1, show_default=True,
              envvar="BATCHGATE_QUEUE_WORKERS", show_envvar=True,
              help="Celery worker processes for queued work (plus one beat); "
                   "0 serves the synchronous routes only.")
@click.option("--demo", is_flag=True,
              help="With no config: start built-in fake upstreams and serve demo models.")
@click.option("--detailed-debug", is_flag=True, help="Debug logging.")
def up(config_path: str | None, host: str | None, port: int | None, num_workers: int,
       threads: int, worker_class: str, queue_workers: int, demo: bool,
       detailed_debug: bool) -> None:
    """Run everything on this machine: the API (gunicorn), Celery workers with beat, and a
    Redis of its own when none is configured."""
    if worker_class == "gevent":
        # Before anything imports ssl or socket users: gunicorn's own patching happens after
        # the fork, too late for modules the master already imported (urllib3, redis).
        from gevent import monkey

        monkey.patch_all()
    from batchgate.serve import serve

    logging.basicConfig(level=logging.DEBUG if detailed_debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config_path is None and not demo:
        raise click.UsageError("give --config FILE (or BATCHGATE_CONFIG), or --demo")
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        if config_path is None:
            from batchgate.demo import DemoUpstream

            upstream = DemoUpstream()
            stack.callback(upstream.stop)
            config_path = str(upstream.config_path)
            click.echo(f"demo upstream on {upstream.base_url}")
        settings = _load(config_path, env)
        stack.enter_context(_queue_services(settings, env, queue_workers, config_path))
        settings = _load(config_path, env)
        bind_host = host or settings.server.host
        bind_port = port if port is not None else settings.server.port
        click.echo(f"batchgate {__version__} serving {', '.join(settings.groups())} on "
                   f"http://{bind_host}:{bind_port}")
        serve(settings, host=bind_host, port=bind_port, workers=num_workers, threads=threads,
              worker_class=worker_class, log_level="debug" if detailed_debug else "info")


@contextlib.contextmanager
def _queue_services(settings: Settings, env: dict[str, str], queue_workers: int,
                    config_path: str) -> Iterator[None]:
    """An embedded Redis when none is configured (with a files folder that goes with it), a
    server key, and the Celery workers. ``env`` is updated so that this process and its
    children agree on all of them."""
    from batchgate.processes import EmbeddedRedis, celery_args, owned, private_folder, spawn, stop
    from workers.webhooks.secretbox import SecretBox

    with contextlib.ExitStack() as stack:
        if settings.server.redis_url is None:
            try:
                redis = EmbeddedRedis()
            except RuntimeError as exc:
                raise click.ClickException(str(exc)) from None
            stack.callback(redis.stop)
            env["BATCHGATE_REDIS_URL"] = redis.url
            click.echo(f"embedded redis on {redis.url} (nothing kept on disk)")
            if settings.files.files_dir == default_files_dir(env, sys.platform):
                # File records die with the embedded Redis, so their bodies must too: kept in
                # the data directory they would pile up there, unreachable, run after run.
                files, remove_files = private_folder("batchgate-files-")
                stack.callback(remove_files)
                env["BATCHGATE_FILES_DIR"] = files
                click.echo(f"files in {files} (removed at exit, like the embedded redis)")
        if settings.queue.secret_key is None:
            # Ephemeral: webhook secrets of jobs still pending at a restart become unusable.
            env["BATCHGATE_SECRET_KEY"] = SecretBox.generate_key()
        env["BATCHGATE_CONFIG"] = config_path
        for number in range(queue_workers):
            worker = spawn(celery_args(
                "worker", "-P", "gevent", "-c", str(settings.queue.worker_concurrency),
                "-Q", "interactive,bulk", "-n", f"batchgate{number}-{os.getpid()}@%h",
                "--loglevel", "INFO"), env)
            stack.callback(owned(stop, worker))
        if queue_workers:
            # Celery's embedded beat (-B) does not run under the gevent pool: its own process,
            # with its schedule file in a folder removed on exit.
            folder, remove_folder = private_folder("batchgate-beat-")
            stack.callback(remove_folder)
            schedule = Path(folder) / "schedule"
            beat = spawn(celery_args("beat", "--loglevel", "WARNING", "-s", str(schedule)), env)
            stack.callback(owned(stop, beat))
        yield


@main.command()
@config_option
@click.option("--concurrency", type=click.IntRange(min=1), envvar="BATCHGATE_WORKER_CONCURRENCY",
              show_envvar=True, help="Items in flight per process [default: from config].")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(config_path: str | None, concurrency: int | None, loglevel: str) -> None:
    """Run a Celery worker for queued work (gevent pool; scale out with more of these)."""
    from batchgate.processes import celery_args

    settings = _load(config_path)
    args = celery_args("worker", "-P", "gevent", "-c",
                       str(concurrency or settings.queue.worker_concurrency),
                       "-Q", "interactive,bulk", "--loglevel", loglevel)
    _exec(args, config_path)


@main.command()
@config_option
@click.option("--loglevel", default="INFO", show_default=True)
def beat(config_path: str | None, loglevel: str) -> None:
    """Run the periodic scheduler (one per deployment): recovery, expiry, webhooks."""
    from batchgate.processes import celery_args

    _load(config_path)
    _exec(celery_args("beat", "--loglevel", loglevel), config_path)


def _exec(args: list[str], config_path: str | None) -> NoReturn:
    if config_path:
        os.environ["BATCHGATE_CONFIG"] = config_path
    os.execv(args[0], args)  # noqa: S606  (replace this process: signals reach Celery)


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
    import urllib.error
    import urllib.request

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


@main.command("fake-upstream", add_help_option=False,
              context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def fake_upstream(ctx: click.Context) -> None:
    """A fake OpenAI-compatible upstream for tests, benchmarks and demos (see --help)."""
    # Imported on use: aiohttp pulls in ssl, which `up` must import only after gevent patches.
    from batchgate.fake_upstream.cli import fake_upstream_command

    fake_upstream_command.main(args=ctx.args, prog_name="batchgate fake-upstream")


@main.command("test-async", add_help_option=False,
              context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def test_async(ctx: click.Context) -> None:
    """N concurrent queued requests polled to the end, like `litellm --test_async` (--help)."""
    from batchgate.test_async import test_async_command

    test_async_command.main(args=ctx.args, prog_name="batchgate test-async")


from batchgate.batch_cli import batch_group, embed  # noqa: E402  (the HTTP-client commands)

main.add_command(embed)
main.add_command(batch_group)
