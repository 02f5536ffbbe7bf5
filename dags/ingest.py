"""Ingest DAGs: one per dataset, ``ingest_<dataset>``, whatever the number of model projects reading it.

Wiring only: each task makes one call into ``pipelines``.
"""

from __future__ import annotations

from _common import (
    as_datetime,
    build_each_dataset,
    deadline_alert,
    default_args,
    partition_from_context,
    projects,
    reschedule_sensor,
    send_alert,
    validated_asset,
)
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, PokeReturnValue, task

from pipelines.core import catalog

DOC = """
# Ingest `{dataset}`

**Purpose.** Validate each day's landed `{dataset}` files against the data contract
`{contract}` and publish the rows that pass, once for every model project that reads
the dataset ({readers}). Rows that break a rule are quarantined
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
`{asset}` with `extra = {{"ds", "dataset", "validated_rows", "report"}}`: the drift
and batch-scoring DAGs of every project reading `{dataset}` follow it.

**Large days.** A day of more than {shard_mib} MiB landed is read by up to {max_shards} mapped
`validate_shard` tasks (whole files each, spread over the workers); `validate_partition` then
merges their counts, decides and publishes once. A smaller day maps no shard task.

**Failures.** A contract halt fails `validate_partition` without retries (fix the
delivery, then clear the task); other errors retry with backoff.

**Alerts** (the `alerts` of {readers}): a contract halt, with the report and the task log; a
task that fails for good; a scheduled day not validated {deadline}.
"""


def build_ingest_dag(dataset):
    cfg = dataset.ingest
    dag_id = f"ingest_{dataset.name}"
    validated = validated_asset(dataset)
    reading = [p for p in projects() if p.dataset.name == dataset.name]  # the YAML files, read once here
    readers = sorted(p.name for p in reading)
    # The tightest deadline of the projects reading the dataset: each of them waits for the day.
    minutes = [m for p in reading if (m := p.alerts.deadlines.validated_within_minutes)]
    deadline = deadline_alert(dataset, dag_id, "validated", min(minutes) if minutes else None, cfg.schedule)
    with DAG(
        dag_id=dag_id,
        description=f"Validate landed {dataset.name} partitions against {dataset.contract}",
        # A data-interval timetable: the run at D 00:00 covers day D-1 and has
        # logical date D-1, so the partition it validates is complete when it
        # starts (a cron *trigger* would name the day that has just begun).
        schedule=CronDataIntervalTimetable(cfg.schedule, timezone="UTC"),
        start_date=as_datetime(cfg.start_date),
        end_date=as_datetime(cfg.end_date),
        catchup=cfg.catchup,
        max_active_runs=4,
        default_args=default_args(dataset, cfg.retries),
        deadline=deadline,
        tags=["ingest", dataset.name, *dataset.tags],
        params={
            "ds": Param(
                None,
                type=["null", "string"],
                format="date",
                description="Partition to validate (default: the run's logical date)",
            )
        },
        doc_md=DOC.format(
            dataset=dataset.name,
            readers=", ".join(f"`{r}`" for r in readers) or "none yet",
            contract=dataset.contract,
            schedule=cfg.schedule,
            start=cfg.start_date,
            catchup=cfg.catchup,
            dag_id=dag_id,
            poke=cfg.sensor_poke_seconds,
            shard_mib=round(cfg.shard_bytes / 2**20, 1),
            max_shards=cfg.max_shards,
            marker=cfg.ready_marker or "first file",
            timeout=cfg.sensor_timeout_minutes,
            asset=validated.uri,
            landing=catalog.pattern(catalog.landing_dir, dataset.name),
            deadline=f"within {min(minutes)} min of its interval's end" if deadline else "(no deadline set)",
            validated_file=catalog.pattern(catalog.validated_file, dataset.name),
            quarantine=catalog.pattern(catalog.quarantine_dir, dataset.name),
            report=catalog.pattern(catalog.validation_report, dataset.name),
        ),
    ) as dag:

        @reschedule_sensor("wait_for_landing", cfg.sensor_poke_seconds, cfg.sensor_timeout_minutes)
        def wait_for_landing(**context) -> PokeReturnValue:
            """Wait until the delivery is complete; return the shard tasks a large day calls for (none: one task)."""
            from pipelines.ingest.steps import landing_ready

            shards = landing_ready(dataset.name, partition_from_context(context))
            return PokeReturnValue(is_done=shards is not None, xcom_value=shards or [])

        @task(task_id="validate_shard", map_index_template="{{ shard_label }}")
        def validate_shard(shard: dict) -> dict:
            """Read one shard of a large day's files (checked, GX-validated, spilled to storage); decides nothing."""
            from airflow.sdk import get_current_context

            from pipelines.ingest.steps import run_shard

            context = get_current_context()
            # The mapped instance's name in the UI (map_index_template renders it from the context).
            context["shard_label"] = f"{shard['ds']} shard {shard['shard'] + 1} of {shard['of']}"
            ti = context["ti"]
            last_try = ti.try_number > ti.max_tries  # max_tries grows when the task is cleared: tries do not
            return run_shard(dataset.name, shard, last_try=last_try)

        # At least the sensor succeeded (a day with no shard task skips validate_shard), and nothing failed.
        @task(task_id="validate_partition", outlets=[validated], trigger_rule="none_failed_min_one_success")
        def validate_partition(shards: list, **context) -> dict:
            """Validate the partition (taking the shard tasks' reads); publish, quarantine, or halt."""
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.core.errors import ContractHalt
            from pipelines.ingest.steps import run_validation

            try:
                outcome = run_validation(dataset.name, partition_from_context(context))
            except ContractHalt as halt:
                from pipelines.core import alerts
                from pipelines_airflow.alerting import log_url

                send_alert(
                    dataset,
                    lambda halt=halt: alerts.contract_halt(
                        dataset.name, halt.ds, halt.summary, halt.rules, readers=readers, log_url=log_url(context)
                    ),
                    context,
                )
                # Retrying cannot fix a bad delivery: fail now, with the report (alerted: not again as a failure).
                failure = AirflowFailException(str(halt))
                failure.pipelines_alerted = True
                raise failure from None
            context["outlet_events"][validated].extra = outcome.asset_extra()
            return outcome.xcom()

        landed = wait_for_landing()
        validate_shard.expand(shard=landed) >> validate_partition(landed)
    return dag


build_each_dataset("ingest", build_ingest_dag, globals())
