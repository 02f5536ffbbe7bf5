"""What can be checked of docker/ without a Docker engine (none runs on these machines).

The compose file parses; every variable it reads is in ``.env.example`` (with
a placeholder, never a value); every Airflow setting it sets is a real
Airflow option (a typo would be silently ignored); every command a service
runs exists in the environment the lock file builds; the image is
multi-stage, installs exactly the lock and runs as a non-root user; and the
compose and ``make up-prod`` configure Airflow the same way.

The accounts: the two init jobs run here, as Compose would start them (its
interpolation, the service's environment only, its mounts on temporary
folders), with stand-ins for ``mc`` and ``airflow`` on an otherwise empty
PATH. airflow-init must write every Airflow user's password from docker/.env,
so that Airflow's own SimpleAuthManager generates (and prints) none;
minio-init must give the tasks and the MLflow server one account each, with
a policy naming only that consumer's bucket. Only minio and minio-init see
MinIO's root credentials, and no secret is put on a command line.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipelines.core.settings import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"
BIN = Path(sys.executable).parent
# What Compose interpolates in a value: $$ (a literal $), ${VAR}, ${VAR:-default},
# ${VAR-default}, ${VAR:?error}, ${VAR?error} and $VAR.
COMPOSE_REF = re.compile(r"\$\$|\$\{([A-Za-z_]\w*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")
SHELL_REF = re.compile(r"\$\{?([A-Za-z_]\w*)")
# Shell builtins: they start no process, so their arguments show in no process list.
SHELL_BUILTINS = {"printf", "umask", "echo", "export", "test", "[", "exit"}


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


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def _compose_variables(compose: dict) -> dict[str, bool]:
    """Every variable Compose interpolates into the file's values -> whether each use has a default."""
    found: dict[str, bool] = {}
    for text in _strings(compose):
        for m in COMPOSE_REF.finditer(text):
            if name := m.group(1) or m.group(4):
                found[name] = found.get(name, True) and m.group(2) in ("-", ":-")
    return found


def test_every_variable_the_compose_file_reads_is_in_env_example(compose):
    variables = _compose_variables(compose)
    needed = {name for name, defaulted in variables.items() if not defaulted}  # ${X:-default} needs nothing
    assert needed, "the compose file reads no variables?"
    assert needed - set(env_example()) == set()
    assert set(env_example()) - set(variables) == set(), "in .env.example, read by nothing"


def test_the_variable_reader_sees_every_form_compose_interpolates():
    found = _compose_variables({"a": "$$NOT ${A} ${B:-x} ${C-x} ${D:?why} ${E?why} $F $${NOT_EITHER}"})
    assert found == {"A": False, "B": True, "C": True, "D": False, "E": False, "F": False}


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


def _shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script (split at && || | ; &), each without `exec` and NAME=value prefixes."""
    lexer = shlex.shlex(script.replace("$$", "$"), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word in ("&&", "||", "|", ";", "&", "(", ")"):
            commands.append([])
        else:
            commands[-1].append(word)
    out = []
    for words in commands:
        while words and (words[0] == "exec" or re.fullmatch(r"[A-Za-z_]\w*=.*", words[0])):
            words = words[1:]
        if words:
            out.append(words)
    return out


def _command_lines(service: dict) -> list[list[str]]:
    """The command lines a service starts (its command and its health check), references unexpanded."""
    entry = service.get("entrypoint") or []
    command = service.get("command") or []
    command = shlex.split(command) if isinstance(command, str) else command
    lines = []
    if entry[:2] == ["/bin/sh", "-c"]:
        lines += _shell_commands(" ".join(command))
    elif entry or command:
        lines.append([*entry, *command])
    check = (service.get("healthcheck") or {}).get("test") or []
    if check[:1] == ["CMD-SHELL"]:
        lines += _shell_commands(check[1])
    elif check[:1] == ["CMD"]:
        lines.append(check[1:])
    return lines


def _commands(service: dict) -> list[str]:
    """Executables a service runs: its command, or each `cmd` of an `sh -c` script."""
    entry = service.get("entrypoint") or []
    if entry[:2] == ["/bin/sh", "-c"]:
        return [words[0] for words in _shell_commands(" ".join(service.get("command") or []))]
    command = service.get("command") or []
    return [command[0]] if command else []


def test_the_shell_reader_splits_commands_as_sh_does():
    script = 'umask 077 && printf \'%s && x\' "$$A" > /tmp/f && X=1 exec tool --p "$$B" | grep ok; python -c "a; b"'
    assert _shell_commands(script) == [
        ["umask", "077"],
        ["printf", "%s && x", "$A", ">", "/tmp/f"],
        ["tool", "--p", "$B"],
        ["grep", "ok"],
        ["python", "-c", "a; b"],
    ]


def test_every_command_of_the_pipelines_image_exists_in_the_locked_environment(compose):
    services = {n: s for n, s in compose["services"].items() if s.get("image", "").startswith("${PIPELINES_IMAGE")}
    assert {"mlflow", "airflow-init", "airflow-api-server", "airflow-scheduler", "airflow-worker"} <= set(services)
    for name, service in services.items():
        for exe in _commands(service):
            if exe in SHELL_BUILTINS:
                continue
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


def test_every_file_a_service_mounts_from_docker_exists(compose):
    mounted = [
        v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes") or [] if v.startswith("./")
    ]
    assert mounted
    for source in mounted:
        assert (DOCKER / source).is_file(), source


# ---- the accounts: the init jobs, run here


def _interpolate(text: str, values: dict[str, str]) -> str:
    """``text`` as Compose passes it to the container, with docker/.env holding ``values``."""

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        if name in values and (values[name] or m.group(2) != ":-"):
            return values[name]
        return m.group(3) if m.group(2) in ("-", ":-") else ""

    return COMPOSE_REF.sub(one, text)


def _environment(service: dict, values: dict[str, str]) -> dict[str, str]:
    return {k: _interpolate(str(v), values) for k, v in (service.get("environment") or {}).items()}


def _shell_expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: env.get(m.group(1), ""), text)


@pytest.fixture(scope="module")
def values() -> dict[str, str]:
    """A docker/.env: .env.example's values, each change-me replaced by its own value (a value names its variable)."""
    return {k: f"{k.lower().replace('_', '-')}-q7" if v == "change-me" else v for k, v in env_example().items()}


# mc as the pinned release (RELEASE.2025-04-16) spells the commands minio-init may use:
# it logs each call (its arguments, its standard input, the policy it was given) and
# keeps the attachments, refusing one already made as the server does.
FAKE_MC = """#!{python}
import json, sys
from pathlib import Path

args = sys.argv[1:]
call = {{"args": args, "stdin": sys.stdin.read()}}
state_file = Path({state!r})
state = json.loads(state_file.read_text()) if state_file.exists() else {{"attached": []}}
status, error = 0, ""
match args:
    case ["alias", "set", "local", _, _] | ["alias", "set", "local", _, _, _]:
        pass
    case ["alias", "remove" | "rm", "local"]:
        pass
    case ["mb", "--ignore-existing", *targets] if targets and all(t.startswith("local/") for t in targets):
        pass
    case ["admin", "policy", "create", "local", _, path]:
        call["policy"] = call["stdin"] if path == "/dev/stdin" else Path(path).read_text()
    case ["admin", "user", "add", "local", _] | ["admin", "user", "add", "local", _, _]:
        pass
    case ["admin", "policy", "attach", "local", policy, "--user", user]:
        refusal = "mc: <ERROR> Unable to make user/group policy association. "
        if Path({attach_error!r}).exists():
            status, error = 1, refusal + "The specified user does not exist."
        elif [policy, user] in state["attached"]:
            status, error = 1, refusal + "The specified policy change is already in effect."
        else:
            state["attached"].append([policy, user])
    case _:
        status, error = 2, "fake mc: not a command form of the pinned release"
state_file.write_text(json.dumps(state))
with open({log!r}, "a") as log:
    log.write(json.dumps(call) + "\\n")
if error:
    print(error, file=sys.stderr)
sys.exit(status)
"""


@dataclass
class Run:
    """One run of a service's command here; ``local`` maps its container paths to this machine's."""

    proc: subprocess.CompletedProcess
    local: Callable[[str], str]
    tmp: Path

    def mc_calls(self) -> list[dict]:
        log = self.tmp / "mc.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _run_service(service: dict, tmp: Path, values: dict[str, str], shell: str | None = None) -> Run:
    """Start ``service``'s entrypoint and command as Compose would, on this machine.

    Its environment only (as Compose interpolates it), plus a PATH holding only
    stand-ins: ``mc`` (above), ``airflow`` (does nothing), ``python`` (this one).
    Named volumes become folders under ``tmp``, ./ mounts the files in docker/.
    """
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    fakes = {
        "mc": FAKE_MC.format(
            python=sys.executable,
            state=str(tmp / "mc.state"),
            log=str(tmp / "mc.log"),
            attach_error=str(tmp / "attach-fails"),
        ),
        "airflow": "#!/bin/sh\nexit 0\n",
        "python": f'#!/bin/sh\nexec "{sys.executable}" "$@"\n',
    }
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    mounts = {}
    for spec in service.get("volumes") or []:
        source, target = spec.split(":")[:2]
        if source.startswith("."):
            mounts[target] = str((DOCKER / source).resolve())
        else:
            (tmp / "volumes" / source).mkdir(parents=True, exist_ok=True)
            mounts[target] = str(tmp / "volumes" / source)

    def local(text: str) -> str:
        for target in sorted(mounts, key=len, reverse=True):
            text = text.replace(target, mounts[target])
        return text

    argv = [
        local(_interpolate(a, values)) for a in [*(service.get("entrypoint") or []), *(service.get("command") or [])]
    ]
    if shell:
        argv[0] = shell
    env = {k: local(v) for k, v in _environment(service, values).items()} | {"PATH": str(bin_dir)}
    proc = subprocess.run(
        argv, env=env, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
    )
    return Run(proc, local, tmp)


def _secrets(values: dict[str, str]) -> dict[str, str]:
    """The secret values of a docker/.env -> their variable (those .env.example leaves as change-me)."""
    return {values[k]: k for k, v in env_example().items() if v == "change-me"}


def _airflow_users(env: dict[str, str]) -> list[str]:
    return [item.strip().split(":")[0] for item in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")]


def test_airflow_init_writes_every_users_password_from_env_so_airflow_generates_none(
    compose, values, tmp_path, monkeypatch, capsys
):
    init = compose["services"]["airflow-init"]
    run = _run_service(init, tmp_path, values)
    assert run.proc.returncode == 0, run.proc.stderr
    env = _environment(init, values)
    users = _airflow_users(env)
    assert len(users) >= 2
    passwords_file = Path(run.local(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]))
    written = json.loads(passwords_file.read_text())
    from_env = _secrets(values)
    for user in users:
        assert user in written, f"no password for {user!r}: the api-server would generate one and log it"
        assert written[user] in from_env, f"{user!r}'s password is not a docker/.env variable's"
    assert len({from_env[written[u]] for u in users}) == len(users), "users share a password variable"
    assert stat.S_IMODE(passwords_file.stat().st_mode) == 0o600
    assert values["AIRFLOW_ADMIN_PASSWORD"] not in run.proc.stdout + run.proc.stderr

    # Airflow's own start-up (what the api-server runs) finds every user and adds, and prints, nothing.
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    before = passwords_file.read_text()
    for key in ("USERS", "PASSWORDS_FILE", "ALL_ADMINS"):
        monkeypatch.setenv(
            f"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_{key}", run.local(env[f"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_{key}"])
        )
    capsys.readouterr()
    SimpleAuthManager().init()
    assert passwords_file.read_text() == before
    assert "Password for user" not in capsys.readouterr().out
    assert {u: SimpleAuthManager.get_passwords()[u] for u in users} == {u: written[u] for u in users}


def test_airflow_init_rewrites_the_passwords_from_env_at_each_run(compose, values, tmp_path):
    init = compose["services"]["airflow-init"]
    assert _run_service(init, tmp_path, values).proc.returncode == 0
    changed = values | {"AIRFLOW_VIEWER_PASSWORD": "rotated-q7"}
    run = _run_service(init, tmp_path, changed)
    assert run.proc.returncode == 0, run.proc.stderr
    env = _environment(init, changed)
    written = json.loads(Path(run.local(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])).read_text())
    assert written["viewer"] == "rotated-q7"


@pytest.mark.parametrize("missing", ["AIRFLOW_VIEWER_PASSWORD", "AIRFLOW_ADMIN_PASSWORD"])
def test_airflow_init_stops_when_a_user_has_no_password(compose, values, tmp_path, missing):
    init = compose["services"]["airflow-init"]
    run = _run_service(init, tmp_path, values | {missing: ""})
    assert run.proc.returncode != 0
    assert missing in run.proc.stderr
    assert not list((tmp_path / "volumes" / "airflow-passwords").iterdir())


def test_only_airflow_init_and_the_api_server_see_the_airflow_passwords(compose):
    for name, service in compose["services"].items():
        mounts = {v.split(":")[0] for v in service.get("volumes") or []}
        variables = {k for k in service.get("environment") or {} if re.fullmatch(r"AIRFLOW_\w+_PASSWORD", k)}
        if name == "airflow-init":
            assert "airflow-passwords" in mounts and variables
        elif name == "airflow-api-server":
            assert "airflow-passwords" in mounts and not variables
        else:
            assert "airflow-passwords" not in mounts and not variables, name


def test_only_minio_and_minio_init_see_the_root_credentials(compose):
    holders = {name for name, s in compose["services"].items() if "MINIO_ROOT_" in yaml.safe_dump(s)}
    assert holders == {"minio", "minio-init"}


def _s3_consumers(compose: dict, values: dict[str, str]) -> dict[str, tuple[dict[str, str], str]]:
    """Who uses MinIO -> (its environment, the bucket it works in)."""
    services = compose["services"]
    tasks = _environment(services["airflow-worker"], values)
    mlflow = _environment(services["mlflow"], values)
    script = _shell_expand(_interpolate(" ".join(services["mlflow"]["command"]), values), mlflow)
    destination = re.search(r"--artifacts-destination\s+\"?s3://([^/\"\s]+)", script)
    assert destination, "the MLflow server's artifacts are not on S3?"
    return {
        "the Airflow tasks": (tasks, re.fullmatch(r"s3://([^/]+)/.*", tasks["PIPELINES_DATA_ROOT"]).group(1)),
        "the MLflow server": (mlflow, destination.group(1)),
    }


def test_the_tasks_and_the_mlflow_server_use_two_accounts_neither_of_them_root(compose, values):
    airflow = [s for n, s in compose["services"].items() if n.startswith("airflow-")]
    assert len({_environment(s, values)["AWS_ACCESS_KEY_ID"] for s in airflow}) == 1
    (tasks, tasks_bucket), (mlflow, mlflow_bucket) = _s3_consumers(compose, values).values()
    root = {values["MINIO_ROOT_USER"], values["MINIO_ROOT_PASSWORD"]}
    assert tasks["AWS_ACCESS_KEY_ID"] != mlflow["AWS_ACCESS_KEY_ID"]
    assert tasks["AWS_SECRET_ACCESS_KEY"] != mlflow["AWS_SECRET_ACCESS_KEY"]
    assert not root & {tasks["AWS_ACCESS_KEY_ID"], mlflow["AWS_ACCESS_KEY_ID"]}
    assert not root & {tasks["AWS_SECRET_ACCESS_KEY"], mlflow["AWS_SECRET_ACCESS_KEY"]}
    assert tasks_bucket != mlflow_bucket


def test_whoever_uses_an_account_starts_after_minio_init_made_it(compose):
    services = compose["services"]

    def after(name: str, job: str) -> bool:
        return (services[name].get("depends_on") or {}).get(job, {}).get(
            "condition"
        ) == "service_completed_successfully"

    late = [n for n in ("mlflow", "airflow-init") if not after(n, "minio-init")]
    late += [n for n in services if n.startswith("airflow-") and n != "airflow-init" and not after(n, "airflow-init")]
    assert late == []


@dataclass
class MinIO:
    """What minio-init left on the server, from the calls it made."""

    root: tuple[str, str] | None
    buckets: set[str]
    users: dict[str, str]
    policies: dict[str, dict]
    attached: dict[str, set[str]]


def _minio(calls: list[dict]) -> MinIO:
    state = MinIO(None, set(), {}, {}, {})
    for call in calls:
        args, first_line = call["args"], call["stdin"].split("\n")[0]  # mc reads a key from stdin's first line
        if args[:2] == ["alias", "set"]:
            state.root = (args[4], args[5] if len(args) > 5 else first_line)
        elif args[0] == "mb":
            state.buckets |= {t.removeprefix("local/") for t in args[2:]}
        elif args[:3] == ["admin", "policy", "create"]:
            state.policies[args[4]] = json.loads(call["policy"])
        elif args[:3] == ["admin", "user", "add"]:
            state.users[args[4]] = args[5] if len(args) > 5 else first_line
        elif args[:3] == ["admin", "policy", "attach"]:
            state.attached.setdefault(args[6], set()).add(args[4])
    return state


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# What an account limited to a bucket may do: list the bucket, read, write and delete its objects.
BUCKET_ACTIONS = {
    "s3:GetBucketLocation",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
}
SHELLS = [shutil.which(s) for s in ("dash", "bash")]  # the mc image's sh is bash; Debian's, dash


@pytest.mark.parametrize("shell", [s for s in SHELLS if s] or [None])
def test_minio_init_gives_each_consumer_an_account_limited_to_its_bucket(compose, values, tmp_path, shell):
    run = _run_service(compose["services"]["minio-init"], tmp_path, values, shell=shell)
    assert run.proc.returncode == 0, run.proc.stderr
    minio = _minio(run.mc_calls())
    assert minio.root == (values["MINIO_ROOT_USER"], values["MINIO_ROOT_PASSWORD"])
    for who, (env, bucket) in _s3_consumers(compose, values).items():
        key = env["AWS_ACCESS_KEY_ID"]
        assert bucket in minio.buckets, who
        assert minio.users.get(key) == env["AWS_SECRET_ACCESS_KEY"], f"{who}: minio-init makes no account {key}"
        assert minio.attached.get(key), f"{who}: no policy attached to {key}"
        granted = set()
        for policy in minio.attached[key]:
            for statement in minio.policies[policy]["Statement"]:
                assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, (who, statement)
                assert statement["Effect"] == "Allow"
                actions = set(_as_list(statement["Action"]))
                assert actions <= BUCKET_ACTIONS, (who, actions - BUCKET_ACTIONS)
                for arn in _as_list(statement["Resource"]):
                    assert arn == f"arn:aws:s3:::{bucket}" or arn.startswith(f"arn:aws:s3:::{bucket}/"), (who, arn)
                granted |= actions
        assert {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= granted, who


def test_minio_init_puts_no_secret_on_a_command_line(compose, values, tmp_path):
    run = _run_service(compose["services"]["minio-init"], tmp_path, values)
    assert run.proc.returncode == 0, run.proc.stderr
    calls = run.mc_calls()
    assert calls
    for value, variable in _secrets(values).items():
        assert not [c["args"] for c in calls if any(value in a for a in c["args"])], variable
        assert value not in run.proc.stdout + run.proc.stderr, variable


def test_minio_init_runs_again_without_error_and_stops_on_a_real_one(compose, values, tmp_path):
    init = compose["services"]["minio-init"]
    assert _run_service(init, tmp_path, values).proc.returncode == 0
    again = _run_service(init, tmp_path, values)  # the policies are attached already
    assert again.proc.returncode == 0, again.proc.stderr
    (tmp_path / "attach-fails").touch()
    failed = _run_service(init, tmp_path, values)
    assert failed.proc.returncode != 0
    assert "does not exist" in failed.proc.stderr


@pytest.mark.parametrize(
    "change",
    [
        {"PIPELINES_S3_PASSWORD": "change-me"},
        {"MLFLOW_S3_PASSWORD": ""},
        {"PIPELINES_S3_USER": "minio-root", "MINIO_ROOT_USER": "minio-root"},
        {"MLFLOW_S3_USER": "same", "PIPELINES_S3_USER": "same"},
        {"MLFLOW_BUCKET": "pipelines-data", "S3_BUCKET": "pipelines-data"},
        {"S3_BUCKET": 'data", "arn:aws:s3:::*'},
    ],
    ids=["placeholder", "empty", "root-name", "one-account", "one-bucket", "not-a-bucket"],
)
def test_minio_init_refuses_a_bad_env_before_calling_minio(compose, values, tmp_path, change):
    run = _run_service(compose["services"]["minio-init"], tmp_path, values | change)
    assert run.proc.returncode != 0
    assert [c["args"][:2] for c in run.mc_calls()] in ([], [["alias", "remove"]])


def test_no_secret_is_put_on_a_command_line(compose):
    """No command a service (or its health check) starts gets a secret as an argument.

    A secret: a variable .env.example leaves as change-me, or a container variable
    built from one. Shell builtins (printf) start no process, so they may. The
    scripts in docker/ are checked by running them (minio-init's mc calls above;
    airflow_passwords.py reads the environment).
    """
    secret = {k for k, v in env_example().items() if v == "change-me"}
    offenders = []
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        names = secret | {
            k for k, v in env.items() if {m.group(1) or m.group(4) for m in COMPOSE_REF.finditer(str(v))} & secret
        }
        for words in _command_lines(service):
            if words[0] in SHELL_BUILTINS:
                continue
            for word in words[1:]:
                offenders += [(name, words[0], ref) for ref in SHELL_REF.findall(word) if ref in names]
    assert offenders == []
