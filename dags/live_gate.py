"""Live gate DAGs: one per model project, ``live_gate_<project>``.

Wiring only: each task makes one call into ``pipelines``.
"""

from __future__ import annotations

from _common import (
    as_datetime,
    build_each,
    champion_asset,
    default_args,
    reschedule_sensor,
    scores_asset,
    send_alert,
    shadow_asset,
)
from airflow.sdk import DAG, Param, PokeReturnValue, task

from pipelines.core import catalog

DOC = """
# Live gate of `{name}`: shadow versions judged on labelled days

**Purpose.** Shadow versions are scored beside the champion by `batch_score_{name}`
(into `{shadow_file}`, never BI's table). Labels arrive with the data, so each day both
scored is a paired test on real traffic. This DAG measures every version on the same
labelled rows of each day of the last {window} days, and runs the live gate
(`gate.live`): a shadow is **promoted** when at least {min_days} days are paired, the
{confidence:.0%} paired bootstrap interval (by day) of the {metric} gain is above
{min_gain} and no `gate.slices` slice loses more than its tolerance (plus the holdout
gate, unless `gate.promotion` is `live`; now `{promotion}`); it is **retired** when it
loses with confidence over the window or has been scored {max_age} days without passing.

**Trigger.** When both `{scores}` and `{shadow}` have new events (the champion's and a
shadow's publication); the newest partition in the events ends the window. By hand:
the `ds` param. `wait_for_champion_lane` then waits (rescheduling every 30 s, for up to
an hour, then skips) until the champion's lane has published that day too: the two
assets' events of one day can reach the scheduler apart.

**Outputs.** `{record}` (each day: every version's metrics on the same rows),
`{decision}` and `{html}` (each shadow against the champion over time, with its
interval); each shadow's decision on its MLflow run (`gate/live_decision.json`); a
promotion moves the `champion` alias through the gate's locked move and alias history,
and `announce_live_champion` emits `{champion}` (skipped otherwise).
"""


def build_live_gate_dag(project):
    live = project.gate.live
    scores, shadows, champion = scores_asset(project), shadow_asset(project), champion_asset(project)
    with DAG(
        dag_id=f"live_gate_{project.name}",
        description=f"Judge {project.name}'s shadow versions against the champion on live labelled days",
        schedule=scores & shadows,
        start_date=as_datetime(project.scoring.start_date or project.dataset.ingest.start_date),
        catchup=False,
        max_active_runs=1,  # one judgement at a time: each reads the alias the last one may have moved
        default_args=default_args(project, project.retrain.retries),
        tags=["shadow", project.name, project.dataset.name, *project.tags],
        params={
            "ds": Param(
                None, type=["null", "string"], format="date", description="Window end (default: from the events)"
            )
        },
        doc_md=DOC.format(
            name=project.name,
            shadow_file=catalog.pattern(catalog.scores_file, catalog.Lane(project.name, "1")).replace("v=1", "v=…"),
            window=live.window_days,
            min_days=live.min_days,
            confidence=live.confidence,
            metric=project.metrics.primary,
            min_gain=live.min_gain,
            promotion=project.gate.promotion,
            max_age=project.shadow.max_age_days,
            scores=scores.uri,
            shadow=shadows.uri,
            record=catalog.pattern(catalog.live_record, project.name),
            decision=catalog.pattern(catalog.live_decision, project.name),
            html=catalog.pattern(catalog.live_html, project.name),
            champion=champion.uri,
        ),
    ) as dag:

        @reschedule_sensor("wait_for_champion_lane", 30, 60)
        def wait_for_champion_lane(**context) -> PokeReturnValue:
            """The window's end (the newest day in the events, or the ds param), once BI's lane published it."""
            from airflow.sdk.exceptions import AirflowSkipException

            from pipelines.core.partitions import ds_str, partitions_from_events
            from pipelines.training.live import champion_lane_ready

            params = context.get("params") or {}
            if params.get("ds"):
                end = ds_str(str(params["ds"]))
            else:
                days = partitions_from_events(context.get("triggering_asset_events") or {})
                if not days:
                    raise AirflowSkipException("no partition to judge: no 'ds' param and no scores event")
                end = max(days)
            return PokeReturnValue(is_done=champion_lane_ready(project, end), xcom_value=end)

        @task(task_id="judge_shadows")
        def judge_shadows(end: str, **context) -> dict:
            """Measure the window's days and run the live gate: promote a winning shadow, retire losing ones.
            A promotion or a retirement is alerted (a shadow still waiting for its days is not news)."""
            from airflow.sdk.exceptions import AirflowSkipException

            from pipelines.core import alerts
            from pipelines.core.errors import MissingInput
            from pipelines.training.live import run_live_gate
            from pipelines_airflow.alerting import log_url

            try:
                result = run_live_gate(project, end)
            except MissingInput as exc:  # the day halted since: nothing to judge on it
                raise AirflowSkipException(str(exc)) from None
            retired = {str(v) for v in result.get("retired") or []}
            # A dry run (a stale day) moves nothing; a shadow promoted by an earlier try is no shadow now.
            for d in [] if result.get("dry_run") else result.get("shadows") or []:
                promoted = str(d.get("shadow")) == str(result.get("promoted"))
                if promoted or str(d.get("shadow")) in retired:
                    send_alert(
                        project,
                        lambda d=d, promoted=promoted: alerts.live_decision(
                            project.name,
                            end,
                            d,
                            champion=result.get("champion"),
                            promoted=promoted,
                            log_url=log_url(context),
                        ),
                        context,
                    )
            return result

        @task(task_id="announce_live_champion", outlets=[champion])
        def announce_live_champion(result: dict, **context) -> dict:
            """Emit the champion asset when the live gate promoted a shadow (skipped otherwise)."""
            from airflow.sdk.exceptions import AirflowSkipException

            if not result.get("promoted"):
                verdicts = ", ".join(f"v{d['shadow']} {d['verdict']}" for d in result.get("shadows", []))
                raise AirflowSkipException(f"no shadow promoted ({verdicts or 'no active shadow'})")
            extra = {"model": project.name, "version": result["promoted"], "previous": result["champion"]}
            context["outlet_events"][champion].extra = {**extra, "decision": "live gate"}
            return extra

        announce_live_champion(judge_shadows(wait_for_champion_lane()))
    return dag


build_each("live_gate", build_live_gate_dag, globals())
