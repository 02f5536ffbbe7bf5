"""Ingest DAGs: one per model project, ``ingest_<project>``.

Wiring only: each task makes one call into ``pipelines``.
"""

from __future__ import annotations

from _common import (
    as_datetime,
    build_each,
    default_args,
    partition_from_context,
    reschedule_sensor,
    validated_asset,
)
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, PokeReturnValue, task

from pipelines.core import catalog

DOC = """
# Ingest `{dataset}` for `{name}`

**Purpose.** Validate each day's landed `{dataset}` files against the data contract
`{contract}` and publish the rows that pass. Rows that break a rule are quarantined
with the rule id and reason; files that cannot be parsed are quarantined whole; a
halt rule (or a quarantine rate above the contract's maximum) halts the day and
publishes nothing.

**Trigger.** `{schedule}` (data intervals: the run after a day ends validates that day)
from {start} (catchup: {catchup}). Backfill past days with
`airflow backfill create --dag-id {dag_id} --from-date 2013-01-01 --to-date 2013-01-07`,
or trigger one day with the `ds` param.

**Inputs.** `{landing}/` (CSV or Parquet as delivered).
`wait_for_landing` waits for the delivery to be complete (the `{marker}` marker upstream
writes last), rescheduling itself every {poke}s; after {timeout} min it gives up and the run
is *skipped*: nothing landed, nothing to do.

**Outputs.** `{validated_file}`,
`{quarantine}/` (rows with `_rule_ids`, `_reasons`; unreadable files),
`{report}` (and its HTML), and an event on asset
`{asset}` with `extra = {{"ds", "model", "validated_rows", "report"}}`.

**Failures.** A contract halt fails `validate_partition` without retries (fix the
delivery, then clear the task); other errors retry with backoff.
"""


def build_ingest_dag(project):
    cfg = project.ingest
    dag_id = f"ingest_{project.name}"
    validated = validated_asset(project)
    with DAG(
        dag_id=dag_id,
        description=f"Validate landed {project.dataset.name} partitions for {project.name}",
        # A data-interval timetable: the run at D 00:00 covers day D-1 and has
        # logical date D-1, so the partition it validates is complete when it
        # starts (a cron *trigger* would name the day that has just begun).
        schedule=CronDataIntervalTimetable(cfg.schedule, timezone="UTC"),
        start_date=as_datetime(cfg.start_date),
        end_date=as_datetime(cfg.end_date),
        catchup=cfg.catchup,
        max_active_runs=4,
        default_args=default_args(project, cfg.retries),
        tags=["ingest", project.name, project.dataset.name, *project.tags],
        params={
            "ds": Param(
                None,
                type=["null", "string"],
                format="date",
                description="Partition to validate (default: the run's logical date)",
            )
        },
        doc_md=DOC.format(
            name=project.name,
            dataset=project.dataset.name,
            contract=project.dataset.contract,
            schedule=cfg.schedule,
            start=cfg.start_date,
            catchup=cfg.catchup,
            dag_id=dag_id,
            poke=cfg.sensor_poke_seconds,
            marker=cfg.ready_marker or "first file",
            timeout=cfg.sensor_timeout_minutes,
            asset=validated.uri,
            landing=catalog.pattern(catalog.landing_dir, project.dataset.name),
            validated_file=catalog.pattern(catalog.validated_file, project.dataset.name),
            quarantine=catalog.pattern(catalog.quarantine_dir, project.dataset.name),
            report=catalog.pattern(catalog.validation_report, project.dataset.name),
        ),
    ) as dag:

        @reschedule_sensor("wait_for_landing", cfg.sensor_poke_seconds, cfg.sensor_timeout_minutes)
        def wait_for_landing(**context) -> PokeReturnValue:
            """Wait until at least one file has landed for the partition."""
            from pipelines.ingest.steps import landing_ready

            ds = partition_from_context(context)
            return PokeReturnValue(is_done=landing_ready(project.name, ds), xcom_value=ds)

        @task(task_id="validate_partition", outlets=[validated])
        def validate_partition(partition: str, **context) -> dict:
            """Validate the partition; publish, quarantine, or halt."""
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.core.errors import ContractHalt
            from pipelines.ingest.steps import run_validation

            try:
                outcome = run_validation(project.name, partition)
            except ContractHalt as halt:
                # Retrying cannot fix a bad delivery: fail now, with the report.
                raise AirflowFailException(str(halt)) from None
            context["outlet_events"][validated].extra = outcome.asset_extra()
            return outcome.xcom()

        validate_partition(wait_for_landing())
    return dag


build_each("ingest", build_ingest_dag, globals())
