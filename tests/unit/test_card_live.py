"""The card's live days, from a metric history as MLflow returns it (ordered by timestamp, step, value).

The rules: a day checked again shows its latest figures; a day whose drift window reaches into the days
the version was trained and tested on is in-sample (marked, out of the mean); days before them are not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pipelines.core.config import load_project
from pipelines.core.partitions import metric_step
from pipelines.training.card import _live

MODEL = "flights_delay"


@dataclass
class _Metric:
    timestamp: int
    step: int
    value: float


class _Client:
    def __init__(self, logged: dict[str, list[tuple[str, float]]]):
        self.history = {}
        for key, checks in logged.items():
            metrics = [_Metric(t, metric_step(ds), v) for t, (ds, v) in enumerate(checks)]
            self.history[key] = sorted(metrics, key=lambda m: (m.timestamp, m.step, m.value))

    def get_metric_history(self, run_id: str, key: str):
        return list(self.history.get(key, []))


def _days(first: str, n: int) -> list[str]:
    start = dt.date.fromisoformat(first)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(n)]


def test_in_sample_days_are_those_whose_drift_window_reaches_into_training_and_the_latest_check_counts():
    project = load_project(MODEL)
    window = project.drift.window_days
    seen = ("2013-03-01", "2013-03-31")
    before = _days("2013-02-01", 3)  # a backfill's days before the training window: out of sample
    inside = ["2013-03-30"]  # the version's own holdout
    reaching = _days("2013-04-01", window - 1)  # their windows still pool days up to 03-31
    after = _days((dt.date(2013, 3, 31) + dt.timedelta(days=window)).isoformat(), 2)
    days = [*before, *inside, *reaching, *after]
    primary = f"live_{project.metrics.primary}"
    logged = {primary: [(d, 0.7) for d in days], "live_drift_share": [(d, 0.0) for d in days]}
    logged[primary] += [(after[-1], 0.9), (after[-1], 0.6)]  # checked twice more: the last check counts

    live = _live(_Client(logged), project, "run", seen)

    assert live["seen_days"] == [*inside, *reaching] and live["seen_window"] == "2013-03-01..2013-03-31"
    marked = {r["ds"] for r in live["series"] if r["seen"]}
    assert marked == {*inside, *reaching}
    assert live["series"][-1][primary] == 0.6 and live["last"] == 0.6
    out_of_sample = [0.7] * (len(before) + len(after) - 1) + [0.6]
    assert live["mean"] == round(sum(out_of_sample) / len(out_of_sample), 6)


def test_without_recorded_windows_no_day_is_called_in_sample():
    project = load_project(MODEL)
    logged = {f"live_{project.metrics.primary}": [("2013-03-02", 0.7)], "live_drift_share": [("2013-03-02", 0.2)]}
    live = _live(_Client(logged), project, "run", None)
    assert live["seen_days"] == [] and live["mean"] == 0.7 and live["seen_window"] is None
