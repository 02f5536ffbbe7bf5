"""The package's shape, checked: rooms, what may import what, and the cost of importing.

- ``pipelines/`` (the library) imports neither Airflow nor the ops tooling in
  ``pipelines_ops/``, statically or at import time;
- a stage room (``ingest``, ``training``, ``monitoring``, ``scoring``)
  imports only the core and itself: stages meet through the core (the
  catalog, storage, tracking), never through each other's modules;
- importing any library module loads no heavy library (each step imports
  what it uses, inside the function, because every Airflow task is a fresh
  process that pays for its imports).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.core.settings import PROJECT_ROOT

LIBRARY = PROJECT_ROOT / "pipelines"
STAGES = ("ingest", "training", "monitoring", "scoring")
HEAVY = (
    "airflow",
    "great_expectations",
    "mlflow",
    "evidently",
    "xgboost",
    "sklearn",
    "boto3",
    "pandas",
    "pyarrow",
    "duckdb",
)


def library_modules() -> list[Path]:
    return sorted(p for p in LIBRARY.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_library_module_imports_no_airflow_and_no_ops_tooling(path):
    bad = sorted(
        m for m in imported_modules(path) if m.split(".")[0] in ("airflow", "pipelines_ops", "pipelines_airflow")
    )
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_only_the_core_and_itself(stage):
    offenders = {}
    for path in sorted((LIBRARY / stage).rglob("*.py")):
        foreign = sorted(
            m
            for m in imported_modules(path)
            if m.startswith("pipelines.")
            and not m.startswith(("pipelines.core", f"pipelines.{stage}"))
            and m.count(".") >= 1
        )
        if foreign:
            offenders[path.name] = foreign
    assert not offenders, f"{stage} reaches into other rooms: {offenders}"


def test_importing_every_library_module_loads_no_heavy_library_and_no_tooling():
    names = [module_name(p) for p in library_modules() if p.name != "__main__.py"]
    code = (
        f"import importlib, sys\nfor name in {names!r}:\n    importlib.import_module(name)\n"
        f"print(','.join(m for m in {(*HEAVY, 'pipelines_ops')!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the library loaded {out.stdout.strip()}"


def test_the_checks_can_fail(tmp_path):
    """The import scan sees lazy imports inside functions, which is where a step would hide one."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from pipelines_ops.demo_data import seed_demo\n    import airflow.sdk\n")
    assert {"pipelines_ops.demo_data", "airflow.sdk"} <= imported_modules(probe)


# ---- the catalog is the only place a storage key is built or parsed

ZONE_PREFIX = re.compile(r"(^|/)(landing|validated|quarantine|reports|training|checkpoints|scores)/")
KEY_OWNERS = {LIBRARY / "core" / "catalog.py", LIBRARY / "core" / "storage.py"}
SCANNED = sorted(
    p
    for folder in (LIBRARY, PROJECT_ROOT / "pipelines_ops", PROJECT_ROOT / "pipelines_airflow", PROJECT_ROOT / "dags")
    for p in folder.rglob("*.py")
    if "__pycache__" not in p.parts and p not in KEY_OWNERS
)


def key_building(source: str) -> list[str]:
    """Places in a module that build or parse a storage key by hand.

    - a string literal (or a literal part of an f-string) that starts a zone
      folder (``validated/``, ``…/scores/``) or a partition folder (``/ds=``,
      or exactly ``ds=``), docstrings excepted;
    - splitting or partitioning anything on ``/`` (parsing keys by position);
    - a call of ``partition_dir`` (the Hive folder name of a partition).

    A line that says ``# not a storage key`` is exempt (a GX batch named ``ds=…``).
    """
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    exempt = {i for i, line in enumerate(source.splitlines(), 1) if "# not a storage key" in line}
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in exempt:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
            if ZONE_PREFIX.search(text) or "/ds=" in text or text == "ds=":
                found.append(f"line {node.lineno}: literal {text[:60]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("split", "rsplit", "partition", "rpartition") and any(
                isinstance(a, ast.Constant) and a.value == "/" for a in node.args
            ):
                found.append(f"line {node.lineno}: .{node.func.attr}('/')")
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name == "partition_dir":
                found.append(f"line {node.lineno}: partition_dir()")
    return found


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_no_module_outside_the_catalog_builds_or_parses_a_storage_key(path):
    found = key_building(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(PROJECT_ROOT)} builds storage keys by hand: {found}"


def test_the_key_scan_can_fail():
    hits = key_building(
        'def f(d, ds, key):\n    """validated/x is fine in a docstring."""\n'
        '    a = f"validated/{d}/ds={ds}/part.parquet"\n'
        '    b = key.split("/")[2]\n'
        '    c = root + "/scores/" + d\n'
        '    e = f"{d}/ds={ds}"\n'
        '    g = key.rpartition("/")\n'
        '    h = f"ds={ds}"  # not a storage key\n'
        "    return partition_dir(ds)\n"
    )
    assert len(hits) == 7, hits  # the f-string on line 3 has two literal parts that build keys
    assert key_building('def f():\n    """reports/x/ds=1"""\n    return "no validated partition ds=x"\n') == []


# ---- small functions

#: The longest a library function may be. A step longer than a screen is several steps:
#: read, decide (a pure function), write.
MAX_FUNCTION_LINES = 80


def test_no_library_function_is_longer_than_a_screen():
    long = []
    for path in library_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


# ---- the README's storage tables come from the catalog


def test_readme_storage_tables_are_the_catalogs():
    from pipelines.core import catalog

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- catalog:begin -->\n", "<!-- catalog:end -->"
    assert begin in readme and end in readme, "the README lost its catalog markers"
    shown = readme[readme.index(begin) + len(begin) : readme.index(end)]
    rendered = subprocess.run(
        [sys.executable, "-m", "pipelines.core.catalog"], capture_output=True, text=True, check=True
    ).stdout
    assert rendered == catalog.markdown_table()
    assert shown == rendered, (
        "README's storage tables differ from the catalog: paste `python -m pipelines.core.catalog`"
    )
    for artifact in catalog.ARTIFACTS:  # every artifact is listed, under its own key
        assert f"| {artifact.owner} |" in shown


# ---- tooling reaches the CLI only through entry points


def test_seed_demo_comes_from_the_ops_package_and_a_missing_one_is_skipped(monkeypatch):
    from importlib.metadata import EntryPoint

    import pipelines.cli as cli

    declared = EntryPoint("seed-demo", "pipelines_ops.cli:register", "pipelines.commands")
    missing = EntryPoint("gone", "pipelines_gone_tooling.cli:register", "pipelines.commands")
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [declared, missing])
    monkeypatch.setattr(cli, "_plugins_loaded", False)
    monkeypatch.setattr(cli.app, "registered_commands", list(cli.app.registered_commands))
    cli._load_plugins()  # the missing tooling is skipped, the present one registers
    names = [c.name for c in cli.app.registered_commands]
    assert "seed-demo" in names
    broken = EntryPoint("broken", "pipelines_ops.cli:no_such_function", "pipelines.commands")
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [broken])
    monkeypatch.setattr(cli, "_plugins_loaded", False)
    monkeypatch.setattr(cli.app, "registered_commands", list(cli.app.registered_commands))
    warned = []
    monkeypatch.setattr(cli, "_plugin_failed", lambda ep, exc: warned.append((ep.name, type(exc).__name__)))
    cli._load_plugins()  # a broken plugin is skipped with a warning; the steps' commands stay
    assert warned == [("broken", "AttributeError")]
    assert "validate" in [c.name for c in cli.app.registered_commands]


def test_a_broken_plugin_never_takes_the_cli_down(monkeypatch, capsys):
    from importlib.metadata import EntryPoint

    import pipelines.cli as cli

    broken = EntryPoint("broken", "pipelines_ops.nosuch:register", "pipelines.commands")
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [broken])
    monkeypatch.setattr(cli, "_plugins_loaded", False)
    monkeypatch.setattr(cli.app, "registered_commands", list(cli.app.registered_commands))
    assert cli.main(["--help"]) == 0
    assert "validate" in capsys.readouterr().out
