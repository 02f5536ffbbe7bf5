"""Retrain DAGs: one per model project, ``retrain_<project>``.

Wiring only: each task makes one call into ``pipelines``.
"""

from __future__ import annotations

from _common import as_datetime, build_each, champion_asset, default_args, drift_asset, send_alert
from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, task

from pipelines.core import catalog

DOC = """
# Retrain `{name}`

**Purpose.** Train a challenger on the validated `{dataset}` partitions of a
{window}-day window (the last {holdout} days held out), log it to MLflow and register
a version, then let the promotion gate decide: the `champion` alias moves only when
every criterion passes (floors, minimum change, paired bootstrap, per-slice
non-regression). A rejection is a normal outcome: the run stays green, the decision
(in the task log and on the challenger's MLflow run under `gate/`) says why.

**Trigger.** Monthly (`{schedule}`, trains through the day before the run), **or** an
event on the drift asset `{drift}` (trains through the drifted partition, trigger
`drift`, the event's `extra` recorded as evidence), **or** by hand with the params
`end_ds` (last day of the window) and `force` (train even if a version already exists
for the same data and code).

**Inputs.** `{validated_file}`.

**Outputs.** `{training}/` (train/holdout Parquet, a record with
the DVC-compatible fingerprint; `ds` is the window's last day), an MLflow run and model version, and an event on
`{champion}` when the champion changes. Every gate decision is sent as an alert (the project's
`alerts`: each criterion with its figures, the challenger's MLflow run, the task log).
"""


def build_retrain_dag(project):
    cfg = project.retrain
    dag_id = f"retrain_{project.name}"
    drift = drift_asset(project)
    champion = champion_asset(project)
    with DAG(
        dag_id=dag_id,
        description=f"Train, gate and promote {project.name}",
        schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(cfg.schedule, timezone="UTC"), assets=drift),
        start_date=as_datetime(cfg.start_date),
        end_date=as_datetime(cfg.end_date),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(project, cfg.retries),
        tags=["retrain", project.name, *project.tags],
        params={
            "end_ds": Param(
                None,
                type=["null", "string"],
                format="date",
                description="Last day of the training window (default: from the trigger)",
            ),
            "force": Param(False, type="boolean", description="Train even if this data and code have a version"),
        },
        doc_md=DOC.format(
            name=project.name,
            dataset=project.dataset.name,
            window=project.training.window_days,
            holdout=project.training.holdout_days,
            schedule=cfg.schedule,
            drift=drift.uri,
            champion=champion.uri,
            validated_file=catalog.pattern(catalog.validated_file, project.dataset.name),
            training=catalog.pattern(catalog.training_dir, project.name),
        ),
    ) as dag:

        @task(task_id="train_challenger")
        def train_challenger(**context) -> dict:
            """Build the training set and train a challenger (logged and registered in MLflow)."""
            from airflow.sdk.exceptions import AirflowSkipException

            from pipelines.core.errors import MissingInput
            from pipelines.training.steps import run_training, training_request

            request = training_request(
                params=context.get("params"),
                logical_date=context.get("logical_date"),
                triggering_asset_events=context.get("triggering_asset_events"),
                run_type=str(getattr(context.get("dag_run"), "run_type", "") or ""),
            )
            try:
                return run_training(project.name, request).xcom()
            except MissingInput as exc:
                if request["trigger"] != "schedule":
                    raise
                # A scheduled run for a window with no data (say, unpausing the
                # 2013 demo today) has nothing to do: say so and skip, not fail.
                raise AirflowSkipException(f"nothing to train on: {exc}") from None

        @task(task_id="gate")
        def gate(trained: dict, **context) -> dict:
            """Compare with the champion; promote only if every criterion passes. Every decision is alerted."""
            from pipelines.core import alerts
            from pipelines.training.steps import run_gate_step
            from pipelines_airflow.alerting import log_url

            decision = run_gate_step(project.name, trained["version"], trained.get("trigger")).xcom()
            send_alert(
                project,
                lambda: alerts.gate_decision(
                    project.name,
                    decision,
                    partition=(trained.get("holdout_days") or [None])[-1],  # the window's last day
                    log_url=log_url(context),
                    run_url=decision.get("run_url"),
                ),
                context,
            )
            return decision

        @task(task_id="announce_champion", outlets=[champion])
        def announce_champion(decision: dict, **context) -> dict:
            """Emit the champion asset when the alias moved (skipped otherwise)."""
            from airflow.sdk.exceptions import AirflowSkipException

            from pipelines.training.steps import champion_event

            if not decision.get("promoted"):
                raise AirflowSkipException(f"champion unchanged: {', '.join(decision.get('failed') or []) or 'no-op'}")
            context["outlet_events"][champion].extra = champion_event(decision)
            return decision

        announce_champion(gate(train_challenger()))
    return dag


build_each("retrain", build_retrain_dag, globals())
