"""docker-compose.yml: the services the README names, Redis durable, workers scalable,
healthchecks through `batchgate healthcheck`, real CLI commands, secrets only from the
environment; and `docker compose config` accepts it where a compose binary is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from batchgate.cli import main
from batchgate.healthchecks import Unhealthy, check_beat

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = ("redis", "api", "worker", "beat", "flower")
BATCHGATE_SERVICES = ("api", "worker", "beat", "flower")
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|AUTH", re.IGNORECASE)
# A whole value that is one ${VAR}, ${VAR:?message} or ${VAR?message}: no literal fallback.
ENV_REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(:?\?[^}]*)?\}$")
# What real secrets look like: OpenAI-style keys, Fernet keys, whsec_ webhook secrets.
SECRET_LOOKING = re.compile(r"sk-[A-Za-z0-9_-]{8,}|[A-Za-z0-9_-]{43}=|whsec_[A-Za-z0-9+/=]{8,}")
# Dummy values for the required variables, for `docker compose config`.
REQUIRED_ENV = {"REDIS_PASSWORD": "test-password", "BATCHGATE_MASTER_KEY": "test-master-key",
                "BATCHGATE_SECRET_KEY": "test-secret-key", "FLOWER_BASIC_AUTH": "user:password"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def strings(value: Any) -> list[str]:
    """Every string inside ``value``, keys included, at any depth."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in [*strings(key), *strings(item)]]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def parse_cli(args: list[str]) -> click.Context:
    """Parse ``batchgate ARGS`` as click would run it, without running it: an unknown
    command or option, or a bad value, raises click's usage error."""
    name, rest = args[0], args[1:]
    parent = main.make_context("batchgate", [name], resilient_parsing=True)
    command = main.get_command(parent, name)
    assert command is not None, f"no `batchgate {name}` command"
    return command.make_context(name, list(rest), parent=parent)


def healthcheck_args(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", f"healthcheck {test} should run batchgate directly (no shell)"
    assert test[1] == "batchgate"
    return list(test[2:])


def test_the_services_the_readme_names_exist(services: dict[str, dict[str, Any]]) -> None:
    assert set(SERVICES) <= set(services)


def test_redis_keeps_an_append_only_file_on_a_named_volume(
        compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data"
    assert volume in compose["volumes"]


def test_workers_scale_out_with_no_fixed_name_or_port(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "deploy" not in worker or "replicas" not in worker["deploy"]


def test_every_service_but_redis_is_checked_by_batchgate_healthcheck(
        services: dict[str, dict[str, Any]]) -> None:
    for name in BATCHGATE_SERVICES:
        args = healthcheck_args(services[name])
        assert args[0] == "healthcheck", name
    assert "--worker" in healthcheck_args(services["worker"])
    assert "--beat" in healthcheck_args(services["beat"])


@pytest.mark.parametrize("name", BATCHGATE_SERVICES)
def test_commands_and_healthchecks_are_real_cli_commands(
        services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    # The image's entrypoint is `batchgate`: a command is its arguments.
    parse_cli(list(service["command"]))
    parse_cli(healthcheck_args(service))


def test_the_image_runs_batchgate_as_an_unprivileged_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["batchgate"]' in dockerfile
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users
    assert users[-1] not in ("root", "0")


def test_the_api_runs_alone_and_beat_once(services: dict[str, dict[str, Any]]) -> None:
    assert services["api"]["command"][0] == "api"  # no embedded Redis or workers
    assert services["worker"]["command"][0] == "worker"
    assert services["beat"]["command"][0] == "beat"
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_the_config_is_mounted_read_only(services: dict[str, dict[str, Any]]) -> None:
    for name in BATCHGATE_SERVICES:
        config = [v for v in services[name]["volumes"] if ":/etc/batchgate/config.yaml" in v]
        assert config, name
        assert all(v.endswith(":ro") for v in config), name


def test_secrets_come_only_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key):
                assert ENV_REFERENCE.match(str(value)), f"{name}: {key} must be a ${{VAR}}"
        command = service.get("command", [])
        if "--requirepass" in command:
            assert ENV_REFERENCE.match(command[command.index("--requirepass") + 1])
    for value in strings(services):
        # A password inside a URL must be a reference too.
        for password in re.findall(r"://[^/:@\s]*:([^@\s]*)@", value):
            assert password.startswith("${"), value


def test_no_secret_is_written_in_the_compose_file_or_the_image() -> None:
    for path in (COMPOSE_FILE, ROOT / "Dockerfile"):
        assert not SECRET_LOOKING.findall(path.read_text()), path.name
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert not re.findall(r"^(ENV|ARG)\b.*(KEY|SECRET|PASSWORD|TOKEN)", dockerfile, re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored


def test_beat_is_healthy_while_it_keeps_writing_its_schedule(tmp_path: Path) -> None:
    schedule = str(tmp_path / "schedule")
    with pytest.raises(Unhealthy, match="has not started"):
        check_beat(schedule, max_age=600)
    # shelve's dbm.dumb writes schedule.dat and schedule.dir: the newest write counts.
    (tmp_path / "schedule.dat").write_bytes(b"")
    (tmp_path / "schedule.dir").write_bytes(b"")
    os.utime(tmp_path / "schedule.dat", (1_000, 1_000))
    os.utime(tmp_path / "schedule.dir", (1_500, 1_500))
    assert "100s ago" in check_beat(schedule, max_age=600, now=1_600)
    with pytest.raises(Unhealthy, match="700s ago"):
        check_beat(schedule, max_age=600, now=2_200)


def test_the_readme_tells_how_to_start_and_scale_it() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docker compose up" in readme
    assert "--scale worker=" in readme


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        version = subprocess.run([legacy, "version", "--short"], capture_output=True,
                                 text=True, check=False).stdout.strip().lstrip("v")
        # Compose v1 (docker-compose 1.x) predates the spec this file uses.
        if version[:1].isdigit() and int(version.split(".")[0]) >= 2:
            return [legacy]
    return None


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose (v2) on this machine")
    env = {**os.environ, **REQUIRED_ENV}
    result = subprocess.run([*command, "--project-directory", str(ROOT), "-f",
                             str(COMPOSE_FILE), "config", "-q"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_docker_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose (v2) on this machine")
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED_ENV}
    # An empty project directory: no .env to fill the variables in.
    project = tmp_path / "project"
    project.mkdir()
    result = subprocess.run([*command, "--project-directory", str(project), "-f",
                             str(COMPOSE_FILE), "config", "-q"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, check=False)
    assert "required variable" in result.stderr
