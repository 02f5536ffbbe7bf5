"""What can be checked of docker/ without a Docker engine (none runs on these machines).

The compose file parses; every variable it reads is in ``.env.example`` (with
a placeholder, never a value); every Airflow setting it sets is a real
Airflow option (a typo would be silently ignored); every command a service
runs exists in the environment the lock file builds; the image is
multi-stage, installs exactly the lock and runs as a non-root user; and the
compose and ``make up-prod`` configure Airflow the same way.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.core.settings import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"
BIN = Path(sys.executable).parent
VAR = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(:-[^}]*)?\}")


class _StrictLoader(yaml.SafeLoader):
    """YAML as Compose reads it: a key given twice in one mapping is an error (PyYAML keeps the last)."""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys = [k.value for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]  # merges may override
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {dupes}", node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.load((DOCKER / "docker-compose.yaml").read_text(), Loader=_StrictLoader)


def test_the_strict_loader_rejects_a_key_given_twice():
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate"):
        yaml.load("services:\n  a: 1\nservices:\n  b: 2\n", Loader=_StrictLoader)


def env_example() -> dict[str, str]:
    out = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_every_variable_the_compose_file_reads_is_in_env_example():
    text = (DOCKER / "docker-compose.yaml").read_text()
    needed = {m.group(1) for m in VAR.finditer(text) if not m.group(2)}  # ${X:-default} needs nothing
    assert needed, "the compose file reads no variables?"
    assert needed - set(env_example()) == set()


def test_env_example_holds_placeholders_not_secrets():
    for key, value in env_example().items():
        if re.search(r"PASSWORD|SECRET|KEY", key):
            assert value == "change-me", key


def _airflow_settings(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items() if k.startswith("AIRFLOW__")}


def test_every_airflow_setting_is_a_real_option(compose):
    from airflow.configuration import conf

    keys = set()
    for service in compose["services"].values():
        keys |= set(_airflow_settings(service))
    assert keys
    conf.load_providers_configuration()  # [celery] comes from the Celery provider
    described = conf.configuration_description
    unknown = []
    for key in sorted(keys):
        _, section, option = key.split("__", 2)
        if option.lower() not in described.get(section.lower(), {}).get("options", {}):
            unknown.append(key)
    assert unknown == []


def _commands(service: dict) -> list[str]:
    """Executables a service runs: its command, or each `cmd` of an `sh -c` script (after &&)."""
    command = service.get("command") or []
    entry = service.get("entrypoint") or []
    if entry[:2] == ["/bin/sh", "-c"]:
        script = " ".join(command)
        return [shlex.split(part.strip().removeprefix("exec "))[0] for part in script.split("&&") if part.strip()]
    return [command[0]] if command else []


def test_every_command_of_the_pipelines_image_exists_in_the_locked_environment(compose):
    services = {n: s for n, s in compose["services"].items() if s.get("image", "").startswith("${PIPELINES_IMAGE")}
    assert {"mlflow", "airflow-init", "airflow-api-server", "airflow-scheduler", "airflow-worker"} <= set(services)
    for name, service in services.items():
        for exe in _commands(service):
            if exe == "printf":
                continue  # a shell builtin
            assert (BIN / exe).exists(), f"{name}: {exe} is not in the locked environment"


def test_the_airflow_services_share_one_configuration_with_a_scalable_worker(compose):
    airflow = {n: s for n, s in compose["services"].items() if n.startswith("airflow-") and n != "airflow-init"}
    assert set(airflow) == {
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    }
    configs = {n: _airflow_settings(s) for n, s in airflow.items()}
    first = next(iter(configs.values()))
    assert all(c == first for c in configs.values())
    assert first["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert first["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert "container_name" not in airflow["airflow-worker"] and "ports" not in airflow["airflow-worker"]


def test_compose_and_make_up_prod_configure_airflow_alike(compose, tmp_path):
    from pipelines_ops.prod_stack import Stack

    stack = Stack(home=tmp_path, ports={"api": 1, "mlflow": 2, "s3": 3})
    ours = {k for k in stack.env() if k.startswith("AIRFLOW__")}
    # Host-specific settings differ by design: ports, paths, the log server, the UI refresh.
    local_only = {
        "AIRFLOW__API__HOST",
        "AIRFLOW__API__PORT",
        "AIRFLOW__CORE__DAGS_FOLDER",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
    }
    theirs = set(_airflow_settings(compose["services"]["airflow-scheduler"]))
    assert ours - local_only == theirs


def test_the_image_is_multi_stage_installs_the_lock_and_runs_as_non_root():
    text = (DOCKER / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert "uv pip sync --compile-bytecode --require-hashes" in text and "requirements.lock" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (PROJECT_ROOT / src).exists(), src
