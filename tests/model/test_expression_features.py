"""A project whose derived features are all config expressions trains, is gated, scores and is monitored.

The flights_delay config with ``features.derived`` replaced by DuckDB
expressions computing the same values (and one categorical expression more),
trained with the real pipeline and a real MLflow store on validated January
2013 data. Its logged model still predicts from raw validated rows.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.core import catalog
from pipelines.core.config import load_project
from pipelines.core.features import FeatureSpec, feature_spec, make_features
from pipelines.core.model import pipeline_spec
from pipelines.core.settings import PROJECT_ROOT

MODEL = "flights_delay"
DS = "2013-01-28"

#: The registered derived features as expressions: same names, same values.
EXPRESSIONS = {
    "day_of_week": {"expr": "isodow(make_date(year, month, day)) - 1", "calendar": True},
    "day_of_year": {"expr": "dayofyear(make_date(year, month, day))", "calendar": True},
    "sched_dep_minutes": {"expr": "(sched_dep_time // 100) * 60 + sched_dep_time % 100"},
    "sched_arr_minutes": {"expr": "(sched_arr_time // 100) * 60 + sched_arr_time % 100"},
    "route": {"expr": "origin || '-' || dest", "kind": "categorical"},
}


@pytest.fixture
def expression_project(jan_root, tmp_path, monkeypatch):
    """flights_delay whose derived features are expressions (only ``features`` of the YAML is edited)."""
    d = tmp_path / "configs"
    shutil.copytree(PROJECT_ROOT / "configs", d)
    raw = yaml.safe_load((d / "flights_delay.yaml").read_text())
    derived = raw["features"].pop("derived")
    raw["features"]["expressions"] = {name: EXPRESSIONS[name] for name in [*derived, "route"]}
    (d / "flights_delay.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(d))
    project = load_project(MODEL)
    assert not project.features.derived and len(project.features.expressions) == len(derived) + 1
    return project


def test_a_project_of_expression_features_trains_scores_and_predicts_from_raw_rows(
    expression_project, january, jan_root
):
    import mlflow
    from mlflow.models import get_model_info

    from pipelines.core.tracking import client
    from pipelines.monitoring.drift import run_drift
    from pipelines.scoring import score_partition
    from pipelines.training.gate import run_gate
    from pipelines.training.train import train_challenger

    project = expression_project
    r = train_challenger(project, "2013-01-31")
    assert r["version"] == "1" and r["metrics"]["roc_auc"] > 0.55
    params = client().get_run(r["run_id"]).data.params
    assert params["features_expressions"] == "day_of_week,sched_dep_minutes,sched_arr_minutes,route"
    assert params["feature_expr__route"] == "origin || '-' || dest" and params["features_derived"] == ""

    # The logged model: raw validated rows in (its signature lists the columns the expressions read).
    uri = f"models:/{MODEL}/{r['version']}"
    spec = feature_spec(project)
    assert set(get_model_info(uri).signature.inputs.input_names()) == set(spec.raw_inputs)
    assert {"year", "month", "day", "sched_dep_time", "sched_arr_time", "origin", "dest"} <= set(spec.raw_inputs)
    rows = pd.read_parquet(jan_root / catalog.validated_file("flights", DS))
    proba = mlflow.pyfunc.load_model(uri).predict(rows)
    assert proba.shape == (len(rows), 2) and np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
    # Its first step computes what the registered derived features compute.
    pipeline = mlflow.sklearn.load_model(uri)
    registered = FeatureSpec(spec.numeric, spec.categorical, tuple(e.name for e in spec.expressions))
    pd.testing.assert_frame_equal(make_features(rows, pipeline_spec(pipeline)), make_features(rows, registered))
    numeric = make_features(rows, registered)[registered.numeric_out].to_numpy("float32")
    matrix = pipeline.named_steps["features"].transform(rows)
    np.testing.assert_array_equal(matrix[:, : len(registered.numeric_out)], numeric)

    # Gated (floors: a first champion) and scored through the scoring path.
    assert run_gate(project)["promoted"]
    shutil.copytree(january / catalog.validation_reports("flights"), jan_root / catalog.validation_reports("flights"))
    manifest = score_partition(project, DS)
    assert manifest["rows"] == len(rows) and manifest["model_version"] == r["version"]
    scores = pd.read_parquet(jan_root / catalog.scores_file(MODEL, DS))
    assert len(scores) == len(rows) and np.isfinite(scores["score"]).all()
    np.testing.assert_allclose(scores["score"].to_numpy(), proba[:, 1], rtol=1e-6)  # published in row order

    # Drift monitoring leaves out the calendar expression as it does a registered calendar feature.
    summary = run_drift(project, "2013-01-31")
    assert "day_of_week" not in summary["monitored_columns"]
    assert {"sched_dep_minutes", "sched_arr_minutes", "route"} <= set(summary["monitored_columns"])

    # Edit an expression's text after the champion was trained: drift still compares the champion's own
    # features with its reference (a changed formula is not drift in the data).
    config = project.source
    raw = yaml.safe_load(config.read_text())
    raw["features"]["expressions"]["sched_dep_minutes"]["expr"] = "sched_dep_time * 1000"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    edited = load_project(MODEL)
    again = run_drift(edited, "2013-01-30")
    assert again["columns"]["sched_dep_minutes"]["drifted"] is False
    assert again["columns"]["sched_dep_minutes"]["score"] == pytest.approx(
        run_drift(project, "2013-01-30")["columns"]["sched_dep_minutes"]["score"]
    )
