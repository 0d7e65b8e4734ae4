"""docker-compose.yml, Dockerfile and .env.example, checked as far as this machine allows: it has
the docker client but no engine. `docker compose config` runs when the compose plugin is there;
otherwise (and always) the structure is checked here, with Compose's interpolation rules applied
to .env.example the way `docker compose` would."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import WEB_DRAIN_SECONDS, main
from service.settings import Settings
from tests.support.stack import ROOT

INTAKE_SERVICES = {"migrate", "web", "worker", "beat"}
SERVICES = INTAKE_SERVICES | {"redis", "postgres", "mailpit", "flower"}


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def env_example() -> dict[str, str]:
    """The active (uncommented) assignments of .env.example."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, nested,
    and $$ for a literal dollar. A required variable that is missing raises KeyError."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            out.append(_expression(text[i + 2 : j - 1], env))
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _expression(body: str, env: dict[str, str]) -> str:
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])(.*))?", body, re.DOTALL)
    assert match, body
    name, operator, rest = match.groups()
    value = env.get(name)
    empty = value is None or (operator is not None and operator.startswith(":") and not value)
    if operator is None:
        return value or ""
    if operator.endswith("-"):
        return interpolate(rest, env) if empty else str(value)
    if empty:
        raise KeyError(f"{name}: {interpolate(rest, env)}")
    return str(value)


def resolved(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolved(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolved(value, env) for key, value in node.items()}
    return node


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, text
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_interpolation_rules() -> None:
    env = {"A": "a", "EMPTY": ""}
    assert interpolate("${A}-${B:-b}-${EMPTY:-e}-${EMPTY-e}-$$HOME", env) == "a-b-e--$HOME"
    assert interpolate("${B:-${C:-${A}}}", env) == "a"
    with pytest.raises(KeyError, match="needed"):
        interpolate("${EMPTY:?needed}", env)


def test_services_and_healthchecks() -> None:
    services = load_compose()["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        if name != "migrate":  # a one-shot job: it finishes, it is never "healthy"
            assert service["healthcheck"]["test"], name
        assert service["restart"] == ("no" if name == "migrate" else "unless-stopped"), name
    for name in INTAKE_SERVICES:
        service = services[name]
        assert service["env_file"] == ".env" and service["build"] == "." and service["init"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_redis_keeps_its_data_and_never_evicts() -> None:
    command = load_compose()["services"]["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags["--appendonly"] == "yes" and flags["--appendfsync"] == "everysec"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert "redis-data:/data" in load_compose()["services"]["redis"]["volumes"]


def test_workers_scale_and_beat_is_exactly_one() -> None:
    services = load_compose()["services"]
    worker, beat = services["worker"], services["beat"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N works
    assert "scale" not in beat and "replicas" not in beat.get("deploy", {})
    assert beat["container_name"]  # a second beat container cannot be created
    assert seconds(worker["stop_grace_period"]) > Settings().task_time_limit_seconds
    assert seconds(services["web"]["stop_grace_period"]) > WEB_DRAIN_SECONDS
    assert importlib.util.find_spec("workers.main") is not None  # the worker healthcheck's app


def test_intake_commands_parse() -> None:
    """Every intake container's command is one the CLI accepts, options and all."""
    services = resolved(load_compose()["services"], env_example())
    for name in INTAKE_SERVICES:
        command_name, *args = services[name]["command"]
        command = main.commands[command_name]
        command.make_context(command_name, list(args))  # raises on an unknown option or type


def test_env_example_names_every_setting_and_resolves_the_compose_file() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*INTAKE_([A-Z_]+)=", text, re.MULTILINE))
    assert listed == {spec.name.upper() for spec in fields(Settings)}
    env = env_example()
    compose = resolved(load_compose(), env)  # raises KeyError if a required value is missing
    environment = compose["services"]["web"]["environment"]
    assert environment["INTAKE_DATABASE_URL"] == (
        f"postgresql://intake:{env['POSTGRES_PASSWORD']}@postgres:5432/intake"
    )
    assert environment["INTAKE_REDIS_URL"] == "redis://redis:6379/0"
    assert compose["services"]["flower"]["environment"]["CELERY_BROKER_URL"] == (
        "redis://redis:6379/0"
    )
    settings_env = {k: v for k, v in env.items() if k.startswith("INTAKE_")} | environment
    Settings.from_env(settings_env)  # the example is a valid configuration
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        resolved(load_compose(), {k: v for k, v in env.items() if k != "POSTGRES_PASSWORD"})


def test_dockerfile_is_slim_non_root_and_runs_intake() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert bases and all("-slim" in base for base in bases)
    assert re.search(r"^USER intake", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["intake"]' in dockerfile and "pip install ." in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.MULTILINE):
        assert (ROOT / source).exists(), source
        assert source not in ignored, source
    for needed in ("service/static", "templates/email", "templates/pages"):
        assert (ROOT / needed).is_dir(), needed


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


def test_docker_compose_config(tmp_path: Path) -> None:
    if not _compose_plugin():
        pytest.skip("the docker client here has no compose plugin; the checks above stand in")
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        ["docker", "compose", "config", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
