"""Batch scoring DAGs: one per model project, ``batch_score_<project>``.

Wiring only: each task makes one call into ``pipelines``.
"""

from __future__ import annotations

from _common import (
    as_datetime,
    build_each,
    deadline_alert,
    default_args,
    partition_from_context,
    reschedule_sensor,
    scores_asset,
    shadow_asset,
)
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, PokeReturnValue, task

from pipelines.core import catalog

DOC = """
# Batch scoring of `{name}`

**Purpose.** Score each day's validated `{dataset}` partition with one pinned model
version and publish it exactly once as Hive-partitioned Parquet for BI tools.

**Trigger.** `{schedule}` (data intervals: the run after a day ends scores that day) from
{start} (catchup: {catchup}). Backfill with
`airflow backfill create --dag-id {dag_id} --from-date 2013-01-01 --to-date 2013-01-07`;
add `--dag-run-conf '{{"model_choice": "as_of_partition"}}'` to score each day with the
version that was champion on that day instead of today's champion.

**Params.** `ds` (partition, default: the run's logical date), `model_choice`
(`current` or `as_of_partition`, default `{choice}`; recorded in the manifest),
`chunk_rows` (default {chunk_rows:,}), `restart` (ignore an unfinished checkpoint).

**Tasks.**
- `wait_for_validated` waits for `{validated_file}`, rescheduling every {poke}s;
  after {timeout} min, or at once when the contract halted that day, the run is
  *skipped*: nothing to score.
- `plan` pins the version (from the `champion` alias, once: a promotion during the run
  cannot mix versions) and plans chunks of `chunk_rows` rows, or resumes the
  unfinished plan of an earlier attempt. A partition of **one chunk** (a day, at
  the default `chunk_rows`) is scored, committed and published by `plan` itself
  (`score_chunk` is then skipped): two task processes fewer; a retry resumes the
  checkpoint the same way.
- `score_chunk` is mapped, one task instance per chunk (up to {parallel} at once, on any
  worker). Each commits its chunk in the checkpoint; a retry or a preempted worker
  redoes at most that chunk, and a committed chunk is not redone.
- `publish` streams the chunks into one Parquet file that replaces the partition
  atomically, writes `_manifest.json`, and emits `{asset}` (after a plan that
  published its one chunk, it only announces it).

**Shadow versions** (the project's `shadow:` section, `pipelines shadow add`, or the
`shadow` alias) are scored beside the champion, never into BI's table:
- `shadow_versions` lists the active shadows (skipped when there are none, and so is
  the rest of the shadow branch);
- `score_shadow` is mapped, one task per shadow version: plan, chunks and publish of
  that version's lane into `{shadow_file}`, with the same checkpoint and exactly-once
  publication, then an event on `{shadow_asset}`. The champion's `publish` never waits
  for it or fails with it (a failed shadow fails the run, not BI's partition);
- `live_gate_{name}` follows both assets and judges the shadows on live data.

**Outputs.** `{scores_file}` (natural key, `row_id`, `score`,
`label`, `model_name`, `model_version`, `mlflow_run_id`, `training_fingerprint`,
`contract_version`, `ds`) and `_manifest.json` (pinned version and choice, input,
chunks, checksums). Read with DuckDB:
`select * from read_parquet('<root>/{scores_glob}', hive_partitioning = true)`.

**Failures.** A chunk task killed or preempted mid-chunk (SIGTERM or SIGKILL) is retried
and redoes that chunk only; committed chunks are never redone. No champion yet, more
than 1,000 chunks, or a plan superseded by another run of the day fail the task without
retries (promote a model, raise `chunk_rows`, or clear the run from `plan`).
"""


def build_batch_score_dag(project):
    cfg = project.scoring
    dag_id = f"batch_score_{project.name}"
    scores = scores_asset(project)
    with DAG(
        dag_id=dag_id,
        description=f"Score validated {project.dataset.name} partitions with {project.name}'s champion",
        schedule=CronDataIntervalTimetable(cfg.schedule, timezone="UTC"),
        start_date=as_datetime(cfg.start_date or project.dataset.ingest.start_date),
        end_date=as_datetime(cfg.end_date or project.dataset.ingest.end_date),
        catchup=cfg.catchup,
        max_active_runs=4,
        default_args=default_args(project, cfg.retries),
        # A scheduled day not scored this long after its interval ends is alerted (alerts.deadlines).
        deadline=deadline_alert(
            project, dag_id, "scored", project.alerts.deadlines.scored_within_minutes, cfg.schedule
        ),
        tags=["scoring", project.name, project.dataset.name, *project.tags],
        params={
            "ds": Param(
                None,
                type=["null", "string"],
                format="date",
                description="Partition to score (default: the run's logical date)",
            ),
            "model_choice": Param(
                cfg.model_choice,
                enum=["current", "as_of_partition"],
                description="current: today's champion; as_of_partition: the champion on the partition's date",
            ),
            "chunk_rows": Param(
                None, type=["null", "integer"], minimum=100, description="Rows per chunk (default: the config's)"
            ),
            "restart": Param(False, type="boolean", description="Ignore an unfinished checkpoint and start over"),
        },
        doc_md=DOC.format(
            name=project.name,
            dataset=project.dataset.name,
            schedule=cfg.schedule,
            start=cfg.start_date or project.dataset.ingest.start_date,
            catchup=cfg.catchup,
            dag_id=dag_id,
            choice=cfg.model_choice,
            chunk_rows=cfg.chunk_rows,
            poke=cfg.sensor_poke_seconds,
            timeout=cfg.sensor_timeout_minutes,
            parallel=cfg.parallel_chunks,
            asset=scores.uri,
            validated_file=catalog.pattern(catalog.validated_file, project.dataset.name),
            scores_file=catalog.pattern(catalog.scores_file, project.name),
            scores_glob=catalog.parquet_glob(catalog.scores_table(project.name)),
            shadow_file=catalog.pattern(catalog.scores_file, catalog.Lane(project.name, "1")).replace("v=1", "v=…"),
            shadow_asset=shadow_asset(project).uri,
        ),
    ) as dag:

        @reschedule_sensor("wait_for_validated", cfg.sensor_poke_seconds, cfg.sensor_timeout_minutes)
        def wait_for_validated(**context) -> PokeReturnValue:
            """Wait until the partition is validated; skip when its contract halted it."""
            from airflow.sdk.exceptions import AirflowSkipException

            from pipelines.scoring import validated_ready

            ds = partition_from_context(context)
            state = validated_ready(project, ds)
            if state == "halted":
                halted = f"{project.dataset.name} ds={ds} was halted by its contract: nothing to score"
                raise AirflowSkipException(halted)
            return PokeReturnValue(is_done=state == "ready", xcom_value=ds)

        @task(task_id="plan")
        def plan(partition: str, **context) -> list[dict]:
            """Pin the version and plan the chunks (or resume an unfinished plan): one entry per chunk left to the
            mapped tasks. A one-chunk plan is scored and published here, and leaves none. The plan's identity
            goes to publish as the XCom ``plan``."""
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.core.errors import ConfigError, NoChampion
            from pipelines.scoring import plan_or_score

            params = context.get("params") or {}
            # The run and how often it was cleared: a cleared run (a re-score, a backfill's reprocessing) is a
            # new attempt; the retries of one attempt share its key and find what it did.
            run_key = f"{context['run_id']}#{context['dag_run'].clear_number or 0}"
            try:
                p = plan_or_score(
                    project,
                    partition,
                    chunk_rows=params.get("chunk_rows"),
                    model_choice=params.get("model_choice"),
                    restart=bool(params.get("restart")),
                    run_key=run_key,
                )
            except (NoChampion, ConfigError) as exc:
                raise AirflowFailException(str(exc)) from None  # retrying cannot make a champion or fix a config
            context["ti"].xcom_push(key="plan", value={"partition": partition, "plan_id": p["plan_id"]})
            left = [] if p["manifest"] is not None else p["chunks"]
            return [{"partition": partition, "plan_id": p["plan_id"], "index": c["index"]} for c in left]

        @task(
            task_id="score_chunk",
            max_active_tis_per_dagrun=cfg.parallel_chunks,
            map_index_template="chunk {{ task.op_kwargs['index'] }}",
        )
        def score_chunk(partition: str, plan_id: str, index: int) -> dict:
            """Score and commit one chunk of the plan (a committed chunk is not redone)."""
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.core.errors import ConfigError, PlanConflict
            from pipelines.scoring import score_chunks

            try:
                return score_chunks(project, partition, plan_id, [index])
            except (PlanConflict, ConfigError) as exc:  # a retry cannot fix a superseded plan or a bad setting
                raise AirflowFailException(str(exc)) from None

        # After the chunks, or straight after a plan that published the partition itself (its mapped chunks are
        # then skipped); skipped when the run has nothing to score (the sensor skipped).
        @task(task_id="publish", outlets=[scores], trigger_rule="none_failed_min_one_success")
        def publish(**context) -> dict:
            """Publish the partition atomically (a plan already published: its manifest) and announce it."""
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.core.errors import ConfigError, PlanConflict
            from pipelines.scoring import publish as publish_partition
            from pipelines.scoring.publication import announcement

            planned = context["ti"].xcom_pull(task_ids="plan", key="plan")
            if not isinstance(planned, dict):
                raise AirflowFailException("plan left no 'plan' XCom (a run from before it did): clear the run")
            try:
                manifest = publish_partition(project, planned["partition"], planned["plan_id"])
            except (PlanConflict, ConfigError) as exc:
                raise AirflowFailException(str(exc)) from None
            summary = announcement(manifest)
            context["outlet_events"][scores].extra = summary
            return summary

        @task(task_id="shadow_versions")
        def shadow_versions(partition: str) -> list[dict]:
            """The active shadow versions to score beside the champion (none: the shadow branch is skipped)."""
            from airflow.sdk.exceptions import AirflowSkipException

            from pipelines.core import shadows

            found = shadows.active(project)
            todo = [s for s in found if not s.saw(partition)]  # no live evidence on a day a version trained on
            if not todo:
                why = "no active shadow version" if not found else "every shadow version saw this day in training"
                raise AirflowSkipException(f"{project.name} ds={partition}: {why}")
            return [{"partition": partition, "version": s.version} for s in todo]

        shadows = shadow_asset(project)

        @task(task_id="score_shadow", map_index_template="v{{ task.op_kwargs['version'] }}", outlets=[shadows])
        def score_shadow(partition: str, version: str, **context) -> dict:
            """Plan, score and publish the partition's lane of one shadow version (a retry resumes its checkpoint)."""
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.core.errors import ConfigError, NoChampion
            from pipelines.scoring import plan_or_score
            from pipelines.scoring.publication import announcement

            run_key = f"{context['run_id']}#{context['dag_run'].clear_number or 0}"
            try:
                done = plan_or_score(project, partition, run_key=run_key, shadow=version)
            except (NoChampion, ConfigError) as exc:  # the version is gone, or a bad setting: retrying cannot help
                raise AirflowFailException(str(exc)) from None
            summary = {**announcement(done["manifest"]), "lane": "shadow"}
            context["outlet_events"][shadows].extra = summary
            return summary

        partition = wait_for_validated()
        planned = plan(partition)
        announced = publish()
        planned >> announced
        score_chunk.expand_kwargs(planned) >> announced
        score_shadow.expand_kwargs(shadow_versions(partition))
    return dag


build_each("batch_score", build_batch_score_dag, globals())
