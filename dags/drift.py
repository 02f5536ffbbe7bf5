"""Drift DAGs: one per model project, ``drift_<project>``.

Wiring only: each task makes one call into ``pipelines``.
"""

from __future__ import annotations

from _common import as_datetime, build_each, default_args, drift_asset, send_alert, validated_asset
from airflow.sdk import DAG, Param, task

from pipelines.core import catalog

DOC = """
# Drift and performance monitoring of `{name}`

**Purpose.** Compare each newly validated `{dataset}` partition with the champion's
reference (Evidently: per-feature tests chosen by type and size, the share of drifted
features, the score's and the label's distributions) and score it with the champion to
track live metrics against its holdout baseline. The policy in the model config decides
whether to ask for a retraining: signal when at least {share:.0%} of the monitored
features drift or a metric decays beyond {decay}; fire only after {consecutive}
partition(s) in a row, with at least {min_rows} rows, and not within {cooldown} days of
the last retraining or firing.

**Trigger.** Each event on `{validated}` (the partition is in the event's `extra`);
several queued events are checked in partition order in one run. By hand: the `ds` param.

**Inputs.** `{validated_file}`, the champion's reference stored with its MLflow
version.

**Outputs.** `{summary}` (summary, decision and its inputs) and
`{html}` (Evidently's report); live metrics on the champion's MLflow run
(`live_*`); when the policy fires, an event on `{drift}` whose `extra` names the model,
partition, report and drifted share, which triggers `retrain_{name}`.
`emit_drift` is *skipped* when nothing fired; `check_drift` is skipped while there is no
champion yet. A firing is also sent as an alert (the project's `alerts`: drift share, drifted
features, the report, the champion's MLflow run).
"""


def build_drift_dag(project):
    cfg = project.drift
    validated = validated_asset(project)
    drift = drift_asset(project)
    with DAG(
        dag_id=f"drift_{project.name}",
        description=f"Drift and live performance of {project.name}'s champion; asks for retraining",
        schedule=validated,
        start_date=as_datetime(project.dataset.ingest.start_date),
        catchup=False,
        # Hysteresis and cooldown read the partitions before: one run at a time, in order.
        max_active_runs=1,
        default_args=default_args(project, project.retrain.retries),
        tags=["drift", project.name, project.dataset.name, *project.tags],
        params={
            "ds": Param(
                None,
                type=["null", "string"],
                format="date",
                description="Partition to check (default: from the triggering events)",
            )
        },
        doc_md=DOC.format(
            name=project.name,
            dataset=project.dataset.name,
            share=cfg.drift_share,
            decay=", ".join(f"{k} {v.model_dump(exclude_none=True)}" for k, v in cfg.performance_decay.items())
            or "(none configured)",
            consecutive=cfg.consecutive,
            min_rows=cfg.min_rows,
            cooldown=cfg.cooldown_days,
            validated=validated.uri,
            drift=drift.uri,
            validated_file=catalog.pattern(catalog.validated_file, project.dataset.name),
            summary=catalog.pattern(catalog.drift_summary, project.name),
            html=catalog.pattern(catalog.drift_html, project.name, "features"),
        ),
    ) as dag:

        @task(task_id="check_drift")
        def check_drift(**context) -> dict:
            """Measure every triggering partition against the champion and apply the policy."""
            from airflow.sdk.exceptions import AirflowSkipException

            from pipelines.core.errors import NoChampion
            from pipelines.core.partitions import ds_str, partitions_from_events
            from pipelines.monitoring.drift import run_drift_step

            params = context.get("params") or {}
            if params.get("ds"):
                partitions = [ds_str(str(params["ds"]))]
            else:
                partitions = partitions_from_events(context.get("triggering_asset_events") or {})
            if not partitions:
                raise AirflowSkipException("no partition to check: no 'ds' param and no validated event")
            try:
                return run_drift_step(project.name, partitions)
            except NoChampion as exc:
                raise AirflowSkipException(str(exc)) from None

        @task(task_id="emit_drift", outlets=[drift])
        def emit_drift(result: dict, **context) -> dict:
            """Emit the drift asset (triggers the retrain DAG) when the policy fired; skipped otherwise."""
            from airflow.sdk.exceptions import AirflowSkipException

            if not result.get("fired"):
                last = (result.get("checked") or [{}])[-1]
                raise AirflowSkipException(f"policy did not fire: {last.get('reason', 'nothing checked')}")
            context["outlet_events"][drift].extra = result["fired"]
            from pipelines.core import alerts
            from pipelines_airflow.alerting import log_url

            fired = result["fired"]
            send_alert(project, lambda: alerts.drift_fired(project.name, fired, log_url=log_url(context)), context)
            return result["fired"]

        emit_drift(check_drift())
    return dag


build_each("drift", build_drift_dag, globals())
