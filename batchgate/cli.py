"""The ``batchgate`` command: ``up``, ``api``, ``worker``, ``beat``, ``flower``, ``config check``,
``healthcheck``, ``fake-upstream``, ``test-async``, ``embed`` and
``batch submit|status|results|cancel``."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import NoReturn

import click

from batchgate import __version__
from batchgate.errors import ConfigError
from batchgate.healthchecks import DEFAULT_BEAT_MAX_AGE, READINESS_PATH
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


def _serve_options(command: Callable[..., None]) -> Callable[..., None]:
    """The gunicorn options shared by ``up`` and ``api``."""
    for option in reversed([
        click.option("--host", envvar="BATCHGATE_HOST", show_envvar=True, help="Bind address."),
        click.option("--port", type=int, envvar="BATCHGATE_PORT", show_envvar=True,
                     help="Bind port [default: 4000]."),
        click.option("--num-workers", type=click.IntRange(min=1), envvar="BATCHGATE_NUM_WORKERS",
                     show_envvar=True, default=lambda: os.cpu_count() or 1,
                     help="gunicorn worker processes [default: CPU count]."),
        click.option("--threads", type=click.IntRange(min=1), envvar="BATCHGATE_THREADS",
                     show_envvar=True, default=64, show_default=True,
                     help="Threads per worker process (gthread only)."),
        click.option("--worker-class", type=click.Choice(["gevent", "gthread"]),
                     default="gevent", envvar="BATCHGATE_WORKER_CLASS", show_envvar=True,
                     show_default=True, help="gunicorn worker class."),
    ]):
        command = option(command)
    return command


def _setup_logs(detailed_debug: bool) -> None:
    from batchgate.logs import setup_logging

    setup_logging(logging.DEBUG if detailed_debug else logging.INFO)


def own_metrics_folder(env: MutableMapping[str, str]) -> Callable[[], None]:
    """Point ``env`` at this run's Prometheus multiprocess folder (see batchgate.multiproc)."""
    from batchgate.multiproc import own_folder

    return own_folder(env)


def _patch_for(worker_class: str) -> None:
    if worker_class == "gevent":
        # Before anything imports ssl or socket users: gunicorn's own patching happens after
        # the fork, too late for modules the master already imported (urllib3, redis).
        from gevent import monkey

        monkey.patch_all()


def _serve(settings: Settings, host: str | None, port: int | None, num_workers: int,
           threads: int, worker_class: str, detailed_debug: bool) -> None:
    from batchgate.serve import serve

    bind_host = host or settings.server.host
    bind_port = port if port is not None else settings.server.port
    click.echo(f"batchgate {__version__} serving {', '.join(settings.groups())} on "
               f"http://{bind_host}:{bind_port}")
    serve(settings, host=bind_host, port=bind_port, workers=num_workers, threads=threads,
          worker_class=worker_class, log_level="debug" if detailed_debug else "info")


@main.command()
@config_option
@_serve_options
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
    _patch_for(worker_class)
    _setup_logs(detailed_debug)
    if config_path is None and not demo:
        raise click.UsageError("give --config FILE (or BATCHGATE_CONFIG), or --demo")
    with contextlib.ExitStack() as stack:
        # Set before anything imports prometheus_client; every child inherits it.
        stack.callback(own_metrics_folder(os.environ))
        env = dict(os.environ)
        if config_path is None:
            from batchgate.demo import DemoUpstream

            upstream = DemoUpstream()
            stack.callback(upstream.stop)
            config_path = str(upstream.config_path)
            click.echo(f"demo upstream on {upstream.base_url}")
        settings = _load(config_path, env)
        stack.enter_context(_queue_services(settings, env, queue_workers, config_path,
                                            loglevel="DEBUG" if detailed_debug else "INFO"))
        settings = _load(config_path, env)
        _serve(settings, host, port, num_workers, threads, worker_class, detailed_debug)


@main.command("api")
@config_option
@_serve_options
@click.option("--detailed-debug", is_flag=True, help="Debug logging.")
def api_command(config_path: str | None, host: str | None, port: int | None, num_workers: int,
                threads: int, worker_class: str, detailed_debug: bool) -> None:
    """Serve the API alone (gunicorn): no embedded Redis, no Celery workers or beat. Run
    `batchgate worker` (any number) and one `batchgate beat` beside it, on the same Redis."""
    _patch_for(worker_class)
    _setup_logs(detailed_debug)
    if config_path is None:
        raise click.UsageError("give --config FILE (or BATCHGATE_CONFIG)")
    settings = _load(config_path)
    if settings.server.redis_url is None:
        raise click.UsageError("no Redis configured: set batchgate_settings.redis_url or "
                               "BATCHGATE_REDIS_URL (batchgate up runs one of its own)")
    if settings.queue.secret_key is None:
        # Unlike `up`, no key can be made here: the workers on other hosts must share it.
        click.echo("warning: BATCHGATE_SECRET_KEY is not set: jobs that ask for a webhook "
                   "are refused", err=True)
    remove_metrics = own_metrics_folder(os.environ)
    try:
        _serve(settings, host, port, num_workers, threads, worker_class, detailed_debug)
    finally:
        remove_metrics()


@contextlib.contextmanager
def _queue_services(settings: Settings, env: dict[str, str], queue_workers: int,
                    config_path: str, loglevel: str = "INFO") -> Iterator[None]:
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
                "--loglevel", loglevel), env)
            stack.callback(owned(stop, worker))
        if queue_workers:
            # Celery's embedded beat (-B) does not run under the gevent pool: its own process,
            # with its schedule file in a folder removed on exit.
            folder, remove_folder = private_folder("batchgate-beat-")
            stack.callback(remove_folder)
            schedule = Path(folder) / "schedule"
            beat = spawn(celery_args("beat", "--loglevel",
                                     "DEBUG" if loglevel == "DEBUG" else "WARNING",
                                     "-s", str(schedule)), env)
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
    from batchgate.multiproc import join_folder

    join_folder(os.environ)
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
@click.option("--path", default=READINESS_PATH, show_default=True,
              help="Route to GET under --url (a 2xx answer is healthy).")
@click.option("--worker", "worker_check", is_flag=True,
              help="Instead: ping this host's Celery worker through the broker.")
@click.option("--node", help="Worker to ping with --worker [default: celery@<this host>].")
@click.option("--beat", "beat_check", is_flag=True,
              help="Instead: check that Celery beat on this host wrote its schedule lately.")
@click.option("--max-age", type=float, default=DEFAULT_BEAT_MAX_AGE, show_default=True,
              help="Seconds since beat's last write that still count as healthy.")
@click.option("--redis", "redis_check", is_flag=True,
              help="Instead: PING the configured Redis.")
@config_option
@click.option("--timeout", type=float, default=5.0, show_default=True)
def healthcheck(url: str, path: str, worker_check: bool, node: str | None, beat_check: bool,
                max_age: float, redis_check: bool, config_path: str | None,
                timeout: float) -> None:
    """Exit 0 when healthy, 1 otherwise (for container healthchecks). By default checks the
    gateway at URL is ready; --worker, --beat and --redis check the other processes (they
    read the config: --config or BATCHGATE_CONFIG)."""
    from batchgate import healthchecks as checks

    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--url")
    reports = []
    try:
        if worker_check or beat_check or redis_check:
            settings = _load(config_path)
            if redis_check:
                reports.append(checks.check_redis(settings, timeout))
            if worker_check:
                reports.append(checks.check_worker(
                    settings, node or checks.default_worker_node(), timeout))
            if beat_check:
                reports.append(checks.check_beat(checks.beat_schedule_file(settings), max_age))
        else:
            reports.append(checks.check_api(url, timeout, path,
                                            os.environ.get("BATCHGATE_MASTER_KEY")))
    except checks.Unhealthy as exc:
        click.echo(f"not ready: {exc.message}", err=True)
        sys.exit(1)
    for report in reports:
        click.echo(report)


@main.command()
@config_option
@click.option("--port", type=int, default=5555, show_default=True, envvar="FLOWER_PORT",
              show_envvar=True, help="Port of flower's web UI.")
@click.option("--address", default="", envvar="FLOWER_ADDRESS", show_envvar=True,
              help="Bind address [default: all interfaces].")
def flower(config_path: str | None, port: int, address: str) -> None:
    """Run flower, Celery's monitor, on batchgate's broker (pip install 'batchgate[flower]');
    its other options come from FLOWER_* variables, e.g. FLOWER_BASIC_AUTH=user:password."""
    import importlib.util

    from batchgate.processes import celery_args

    if importlib.util.find_spec("flower") is None:
        raise click.ClickException("flower is not installed: pip install 'batchgate[flower]'")
    _load(config_path)
    _exec(celery_args("flower", f"--port={port}", f"--address={address}"), config_path)


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
