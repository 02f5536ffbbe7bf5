"""The ``pipelines`` command line: one command per step.

Every command prints a short human summary, or with ``--json`` the same as
one JSON object on stdout. Logs go to stderr. Expected failures print one
line on stderr and exit with the code documented in :mod:`pipelines.core.errors`;
unexpected ones keep their traceback and exit 1.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import typer

from pipelines.core.errors import ConfigError, ContractHalt, PipelinesError

app = typer.Typer(
    name="pipelines",
    help="ML retraining and batch-scoring pipeline steps (the same functions the DAGs call).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOpt = typer.Option(False, "--json", help="Print the result as one JSON object on stdout.")
ModelOpt = typer.Option(..., "--model", "-m", help="Model project name (a file in configs/).")


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3", "great_expectations", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def emit(result: dict[str, Any], as_json: bool, human: str) -> None:
    if as_json:
        typer.echo(json.dumps(result, default=str, sort_keys=True))
    else:
        typer.echo(human)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    _setup_logging(verbose)


@app.command("validate")
def validate_cmd(
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset name (a file in configs/datasets/)."),
    model: str = typer.Option(None, "--model", "-m", help="Or a model project: validates the dataset it reads."),
    ds: str = typer.Option(..., "--ds", help="Partition date YYYY-MM-DD."),
    to: str = typer.Option(None, "--to", help="Validate every day from --ds to this date (inclusive)."),
    as_json: bool = JsonOpt,
) -> None:
    """Validate a landed partition of a dataset against its data contract (exit 3 on halt).

    A dataset is validated once for every model project that reads it.
    """
    from pipelines.core.config import load_dataset, load_project
    from pipelines.ingest.validation import validate_partition

    if (dataset is None) == (model is None):
        raise ConfigError("validate: give --dataset D, or --model M for the dataset M reads (one of them)")
    config = load_dataset(dataset) if dataset is not None else load_project(model).dataset
    if to:
        _validate_range(config, ds, to, as_json)
        return
    try:
        r = validate_partition(config, ds)
    except ContractHalt as halt:
        if as_json and halt.summary:
            typer.echo(json.dumps(halt.summary, default=str, sort_keys=True))
        raise
    emit(
        r,
        as_json,
        f"{r['dataset']} ds={r['ds']} {r['status']}: landed {r['landed_rows']}, validated {r['validated_rows']}, "
        f"quarantined {r['quarantined_rows']} rows and {len(r['quarantined_files'])} file(s); "
        f"rules failed: {', '.join(r['rules_failed']) or 'none'}; report {r['report']}",
    )


def _validate_range(config: Any, start: str, end: str, as_json: bool) -> None:
    """Each day in turn (a CLI backfill); exit 3 if any day halted, after all were tried."""
    from pipelines.core.errors import MissingInput
    from pipelines.core.partitions import date_range
    from pipelines.ingest.validation import validate_partition

    results = []
    for day in date_range(start, end):
        try:
            results.append(validate_partition(config, day))
        except ContractHalt as halt:
            results.append(halt.summary or {"ds": day, "status": "halted"})
        except MissingInput as exc:
            results.append({"ds": day, "status": "missing", "reason": str(exc)})
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("published", "halted", "missing")}
    out = {"dataset": config.name, "from": start, "to": end, **counts, "partitions": results}
    emit(
        out,
        as_json,
        f"{config.name} {start}..{end}: {counts['published']} published, "
        f"{counts['halted']} halted, {counts['missing']} missing",
    )
    if counts["halted"]:
        raise ContractHalt(
            f"{counts['halted']} partition(s) halted between {start} and {end}", ds=start, rules=[], report=""
        )


@app.command("train")
def train_cmd(
    model: str = ModelOpt,
    end_ds: str = typer.Option(..., "--end-ds", help="Last day of the training window (its holdout's end)."),
    trigger: str = typer.Option("manual", help="Why: manual, schedule or drift (recorded on the run)."),
    evidence: str = typer.Option("{}", help="JSON evidence of the trigger (e.g. a drift report URI)."),
    force: bool = typer.Option(False, "--force", help="Train even if this data and code already have a version."),
    as_json: bool = JsonOpt,
) -> None:
    """Build the training set, train a challenger, log it to MLflow and register a version."""
    from pipelines.core.config import load_project
    from pipelines.training.train import train_challenger

    try:
        evidence_obj = json.loads(evidence)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--evidence is not JSON: {exc}") from None
    r = train_challenger(load_project(model), end_ds, trigger=trigger, evidence=evidence_obj, force=force)
    primary = next(iter(r["metrics"]))
    emit(
        r,
        as_json,
        f"{r['model']} version {r['version']} (run {r['run_id']}) "
        f"trained on {r['train_days'][0]}..{r['train_days'][1]} "
        f"({r['train_rows']} rows); holdout {r['holdout_days'][0]}..{r['holdout_days'][1]}: "
        f"{primary}={r['metrics'][primary]}; fingerprint {r['fingerprint']}",
    )


@app.command("gate")
def gate_cmd(
    model: str = ModelOpt,
    candidate: str = typer.Option(None, help="Version to gate (default: the newest)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Evaluate only: record nothing, move no alias."),
    force: bool = typer.Option(
        False, "--force", help="Gate a version that was rolled back (or one trained like it) like any other."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Compare a challenger with the champion; promote it only if every criterion passes (exit 4 if not)."""
    from pipelines.core.config import load_project
    from pipelines.core.errors import GateRejected
    from pipelines.training.gate import run_gate

    try:
        d = run_gate(load_project(model), candidate, dry_run=dry_run, force=force)
    except GateRejected as rejected:
        if as_json and rejected.decision:
            typer.echo(json.dumps(rejected.decision, default=str, sort_keys=True))
        raise
    verdict = "promoted to champion" if d["promoted"] else ("passed (dry run)" if d["passed"] else "no change")
    emit(
        d,
        as_json,
        f"{d['model']} v{d['candidate']} vs champion {d['champion'] or '(none)'}: {verdict}"
        + (f"; {'; '.join(d['notes'])}" if d.get("notes") else ""),
    )


@app.command("rollback")
def rollback_cmd(
    model: str = ModelOpt,
    reason: str = typer.Option("manual rollback", help="Why (recorded on the registry)."),
    as_json: bool = JsonOpt,
) -> None:
    """Make previous-champion the champion again."""
    from pipelines.core.config import load_project
    from pipelines.training.gate import rollback

    project = load_project(model)
    r = rollback(project, reason)
    _alert_rollback(project, r)
    emit(r, as_json, f"{model}: champion is now v{r['champion']} (was v{r['previous']}): {r['why']}")


def _alert_rollback(project: Any, r: dict[str, Any]) -> None:
    """Tell the project's alert targets (a failure to is logged; the rollback stands)."""
    from pipelines.core import alerts
    from pipelines.core.tracking import client, run_url

    if not project.alerts.wants("rollback"):
        return
    try:
        link = run_url(client().get_model_version(project.name, r["champion"]).run_id)
    except Exception:  # noqa: BLE001 - the message goes without its link
        link = None
    alerts.dispatch(project.alerts, alerts.rollback(project.name, r, run_url=link))


@app.command("drift")
def drift_cmd(
    model: str = ModelOpt,
    ds: str = typer.Option(..., "--ds", help="Validated partition YYYY-MM-DD."),
    to: str = typer.Option(None, "--to", help="Check every validated day from --ds to this date, in order."),
    as_json: bool = JsonOpt,
) -> None:
    """Compare a partition with the champion's reference (Evidently) and live metrics; decide on retraining.

    Firing is an outcome, not a failure: the exit code is 0 either way; the
    JSON's ``policy_fired`` and ``reason`` say what was decided.
    """
    from pipelines.core import catalog
    from pipelines.core.config import load_project
    from pipelines.core.partitions import date_range
    from pipelines.core.storage import get_storage
    from pipelines.monitoring.drift import run_drift

    project = load_project(model)
    storage = get_storage()
    if to:
        have = set(catalog.validated_partitions(storage, project.dataset.name))
        days = [d for d in date_range(ds, to) if d in have]
        results = [run_drift(project, d, storage) for d in days]
        fired = [r["ds"] for r in results if r["policy_fired"]]
        emit(
            {"model": model, "days": results, "fired": fired},
            as_json,
            f"{model}: {len(results)} partition(s) checked; policy fired on {', '.join(fired) or 'none'}",
        )
        return
    r = run_drift(project, ds, storage)
    emit(
        r,
        as_json,
        f"{model} ds={r['ds']} vs v{r['model_version']}: drift_share {r['drift_share']:.2f} "
        f"({', '.join(r['drifted_features']) or 'no drifted feature'}); "
        f"{'FIRED' if r['policy_fired'] else 'no action'}: {r['reason']}; report {r['report']}",
    )


@app.command("score")
def score_cmd(
    model: str = ModelOpt,
    ds: str = typer.Option(..., "--ds", help="Validated partition YYYY-MM-DD."),
    chunk_rows: int = typer.Option(None, "--chunk-rows", help="Rows per checkpointed chunk (default: the config's)."),
    model_choice: str = typer.Option(
        None, "--model-choice", help="current (today's champion) or as_of_partition (default: the config's)."
    ),
    restart: bool = typer.Option(False, "--restart", help="Ignore an unfinished checkpoint and start over."),
    shadow: str = typer.Option(
        None, "--shadow", help="Score this registered version's shadow lane (shadow/<model>/v=N/), not BI's table."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Score a partition with the pinned champion, checkpointed per chunk; publish it exactly once.

    An interrupted run (SIGTERM: exit 6; or killed) resumes from its checkpoint when run again.
    """
    from pipelines.core.config import load_project
    from pipelines.scoring import score_partition

    r = score_partition(
        load_project(model), ds, chunk_rows=chunk_rows, model_choice=model_choice, restart=restart, shadow=shadow
    )
    emit(
        r,
        as_json,
        f"{model} ds={r['ds']}: {r['rows']} rows scored by v{r['model_version']} "
        f"({r['planned']} chunks: {r['scored']} scored, {r['skipped']} from the checkpoint) -> {r['output']}",
    )


shadow_app = typer.Typer(
    help="Shadow versions: scored beside the champion, judged on live labelled days.", no_args_is_help=True
)
app.add_typer(shadow_app, name="shadow")


@shadow_app.command("status")
def shadow_status_cmd(
    model: str = ModelOpt,
    ds: str = typer.Option(None, "--ds", help="Judge the window ending here (default: the newest validated day)."),
    as_json: bool = JsonOpt,
) -> None:
    """Each active shadow: its live window, metrics, paired interval and the decision the live gate would take."""
    from pipelines.core.config import load_project
    from pipelines.training.live import status

    r = status(load_project(model), ds)
    lines = [f"{model} ds={r['ds']}: champion v{r['champion']}, promotion {r['promotion']}"]
    for d in r["shadows"]:
        boot = next((c for c in d["criteria"] if c["name"].startswith("live_bootstrap:")), {})
        figures = (
            f"gain {boot['mean']:+.4f} [{boot['low']:+.4f}, {boot['high']:+.4f}]"
            if boot.get("low") is not None
            else "no interval"
        )
        lines.append(
            f"  shadow v{d['shadow']} ({d['reason']}): {len(d['days'])} paired day(s) in "
            f"{d['window'][0]}..{d['window'][1]}, {figures}: would {d['verdict']} ({d['why']})"
        )
    if not r["shadows"]:
        lines.append("  no active shadow version")
    emit(r, as_json, "\n".join(lines))


@shadow_app.command("add")
def shadow_add_cmd(
    model: str = ModelOpt,
    version: str = typer.Option(..., "--version", help="Registered version to score in shadow."),
    reason: str = typer.Option("named by a scientist", help="Why (recorded on the version)."),
    as_json: bool = JsonOpt,
) -> None:
    """Start scoring a registered version beside the champion (the oldest shadow retires past the limit)."""
    from pipelines.training.live import add_shadow

    r = add_shadow(model, version, reason)
    emit(r, as_json, f"{model} v{r['version']} is a shadow" + (f"; retired {r['retired']}" if r["retired"] else ""))


@shadow_app.command("retire")
def shadow_retire_cmd(
    model: str = ModelOpt,
    version: str = typer.Option(..., "--version", help="Shadow version to stop scoring."),
    reason: str = typer.Option("retired by a scientist", help="Why (recorded on the version)."),
    as_json: bool = JsonOpt,
) -> None:
    """Stop scoring a shadow version (recorded; its published shadow scores stay)."""
    from pipelines.training.live import retire_shadow

    r = retire_shadow(model, version, reason)
    emit(r, as_json, f"{model} v{r['version']} retired: {r['reason']}")


@shadow_app.command("judge")
def shadow_judge_cmd(
    model: str = ModelOpt,
    ds: str = typer.Option(..., "--ds", help="The labelled day just scored: the window ends here."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Judge only: record nothing, move no alias."),
    as_json: bool = JsonOpt,
) -> None:
    """Measure the day's versions and run the live gate: promote a winning shadow, retire losing ones."""
    from pipelines.core.config import load_project
    from pipelines.training.live import measure_day, run_live_gate

    project = load_project(model)
    if not dry_run:
        measure_day(project, ds)
    r = run_live_gate(project, ds, dry_run=dry_run)
    verdicts = ", ".join(f"v{d['shadow']}: {d['verdict']}" for d in r["shadows"]) or "no active shadow"
    emit(r, as_json, f"{model} ds={r['ds']} vs champion v{r['champion']}: {verdicts}")


@app.command("lineage")
def lineage_cmd(
    model: str = ModelOpt,
    ds: str = typer.Option(..., "--ds", help="Scored partition YYYY-MM-DD."),
    as_json: bool = JsonOpt,
) -> None:
    """Where a scored partition comes from: model version and run, training data, gate decision, input.

    Exits 5 when the partition is not scored; prints ``consistent: false`` (exit 0) when the chain is broken.
    """
    from pipelines.core.config import load_project
    from pipelines.lineage import lineage, summary_lines

    r = lineage(load_project(model), ds)
    emit(r, as_json, "\n".join(summary_lines(r)))


@app.command("card")
def card_cmd(
    model: str = ModelOpt,
    version: str = typer.Option(..., "--version", help="Registered version number."),
    fmt: str = typer.Option("markdown", "--format", help="markdown or html."),
    output: str = typer.Option(None, "--output", "-o", help="Write the card to this file instead of stdout."),
    log_card: bool = typer.Option(False, "--log", help="Also log it with the version (its run's card/ files)."),
    as_json: bool = JsonOpt,
) -> None:
    """A version's model card, as of now: purpose, training data, holdout figures, gate decision, live days.

    Exits 5 when the version is not registered.
    """
    from pathlib import Path

    from pipelines.core.config import load_project
    from pipelines.training.card import card_data, render_html, render_markdown, write_card

    if fmt not in ("markdown", "html"):
        raise ConfigError(f"--format must be markdown or html, not {fmt!r}")
    project = load_project(model)
    data = card_data(project, version)
    if log_card:
        data["logged"] = write_card(project, data["version"])
    if as_json:
        emit(data, True, "")
        return
    text = render_markdown(data) if fmt == "markdown" else render_html(data)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--output {output}: cannot write the card ({exc.strerror})") from None
        typer.echo(f"{model} v{data['version']} ({data['status']}): card written to {output}")
    else:
        typer.echo(text, nl=False)


@app.command("new-project")
def new_project_cmd(
    name: str = typer.Argument(..., help="Model project name (lowercase identifier): writes configs/NAME.yaml."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="The dataset it reads (configs/datasets/D.yaml)."),
    sample: str = typer.Option(
        None,
        "--sample",
        help="A delivery of a new dataset: a data file, a day's folder, or its landing folder of day folders "
        "(a known dataset: sizes the project; default: its latest validated days).",
    ),
    target: str = typer.Option(None, "--target", help="The column to predict (without it: the candidates)."),
    task: str = typer.Option(
        None, "--task", help="classification or regression (default: a 0/1 or boolean target is a classification)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace files that exist."),
    as_json: bool = JsonOpt,
) -> None:
    """Write a commented model project config and, for a new dataset, its contract and dataset config.

    A new dataset's contract is inferred from --sample and checked to pass it; suggestions are marked REVIEW.

    Nothing is written unless every file loads; existing files are kept unless --force.
    """
    from pipelines.scaffold import new_project

    r = new_project(name, dataset, sample=sample, target=target, task=task, force=force)
    lines = [f"wrote {path}" for path in r["written"]]
    if r.get("project_written"):
        f = r["features"]
        lines.append(
            f"{name}: {r['task']} of {r['target']} on {dataset}; features: {len(f['numeric'])} numeric, "
            f"{len(f['categorical'])} categorical, {len(f['expressions'])} expression(s); "
            f"{r['review']} line(s) marked REVIEW"
        )
    else:
        candidates = ", ".join(f"{k} ({v})" for k, v in r["candidates"].items()) or "none"
        lines.append(f"{name}: not written until its target is named; candidates: {candidates}")
    lines += [f"next: {step}" for step in r["next"]]
    emit(r, as_json, "\n".join(lines))


@app.command("migrate-layout")
def migrate_layout_cmd(
    dry_run: bool = typer.Option(False, "--dry-run", help="List the moves, change nothing."),
    as_json: bool = JsonOpt,
) -> None:
    """Move a data root written before the storage catalog to its layout (run once, scheduler stopped)."""
    from pipelines.core.migrate import migrate_layout

    r = migrate_layout(dry_run=dry_run)
    verb = "would move" if dry_run else "moved"
    kept = "".join(f"\n  kept {k['from']}: {k['why']}" for k in r["kept"])
    emit(r, as_json, f"{r['root']}: {verb} {len(r['moved'])} artifact(s), kept {len(r['kept'])}{kept}")


def _load_plugins() -> None:
    """Add the commands other installed packages contribute (entry-point group ``pipelines.commands``).

    Each entry point names a callable that receives the Typer app and adds its
    commands: the ops tooling contributes ``seed-demo`` this way, so the
    library never imports it. A plugin that this install left out is skipped
    quietly; one that fails to load is skipped with a warning, and every step's
    own command keeps working.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    from importlib.metadata import entry_points

    for ep in entry_points(group="pipelines.commands"):
        try:
            ep.load()(app)
        except ModuleNotFoundError as exc:
            if exc.name == ep.module.split(".")[0]:
                continue  # declared by the distribution, left out of this install (the production image)
            _plugin_failed(ep, exc)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the steps' own commands down
            _plugin_failed(ep, exc)
    _plugins_loaded = True


_plugins_loaded = False


def _plugin_failed(ep: Any, exc: Exception) -> None:
    logging.getLogger(__name__).warning(
        "command plugin %s (%s) could not be loaded and is skipped: %s: %s",
        ep.name,
        ep.value,
        type(exc).__name__,
        exc,
        exc_info=exc,
    )


def main(argv: list[str] | None = None) -> int:
    """Console entry point: maps expected failures to their exit codes."""
    try:
        _load_plugins()
        app(args=argv, standalone_mode=False)
    except PipelinesError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None)
        if code is None:
            code = exc.code if isinstance(exc, SystemExit) else 0
        return int(code or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except Exception as exc:  # click usage errors have their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def run() -> None:
    """``pipelines`` console script."""
    sys.exit(main())
