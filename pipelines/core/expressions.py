"""Derived features declared in a model config: safe scalar expressions in DuckDB's SQL.

A model config may declare derived features as expressions over the raw
columns of its data contract, instead of naming a function registered in
:mod:`pipelines.core.features`::

    features:
      expressions:
        dep_minutes: {expr: "(sched_dep_time // 100) * 60 + sched_dep_time % 100"}
        route: {expr: "origin || '-' || dest", kind: categorical}
        weekday: {expr: "dayofweek(make_date(year, month, day))", calendar: true}

**The language** is a DuckDB scalar expression, as it would stand between
``SELECT`` and the end of a query, restricted to:

- column references (names of the contract's columns, double-quoted when a name is
  a keyword or not a plain lower-case identifier: ``"order"``, ``"Ship Date"``;
  :func:`quote_identifier` writes one) and constants;
- arithmetic, string concatenation, comparison and boolean operators,
  ``LIKE``/``ILIKE``, ``IS [NOT] NULL``, ``IS [NOT] DISTINCT FROM``,
  ``[NOT] BETWEEN``, ``[NOT] IN (list)``, ``CASE``, ``COALESCE``,
  ``CAST``/``TRY_CAST``/``::`` to a scalar type, ``TRY``, and ``INTERVAL`` literals;
- the deterministic scalar functions of :data:`ALLOWED_FUNCTIONS`:

  - math: ``abs ceil ceiling floor round trunc sign sqrt cbrt exp ln log log2
    log10 pow power greatest least isnan isinf isfinite even gcd lcm pi radians
    degrees sin cos tan asin acos atan atan2 fmod``;
  - conditional: ``if nullif`` (and ``CASE``, ``COALESCE`` above);
  - text: ``lower upper lcase ucase length strlen substring substr left right
    trim ltrim rtrim replace concat concat_ws contains starts_with ends_with
    prefix suffix strpos instr split_part reverse regexp_matches
    regexp_replace regexp_extract regexp_full_match ascii chr strip_accents
    nfc_normalize`` (``replace`` and ``regexp_replace`` in a form whose
    result is never much longer than their input: see below);
  - dates and times: ``make_date make_time make_timestamp date_part datepart
    year month day dayofmonth dayofweek weekday isodow dayofyear week
    weekofyear quarter hour minute second millisecond yearweek isoyear
    date_diff datediff date_sub datesub date_trunc datetrunc last_day dayname
    monthname strftime strptime try_strptime epoch`` (``EXTRACT(part FROM x)``
    is ``date_part``) and the interval constructors ``to_years to_months
    to_weeks to_days to_hours to_minutes to_seconds to_milliseconds
    to_microseconds``.

Anything else is refused by :func:`check` with a :class:`ConfigError` naming
the expression and the reason: more than one statement, ``FROM`` (tables,
files, table functions such as ``read_csv``), subqueries, ``*``, aggregates
and window functions, lambdas, parameters, qualified names, and every
function not on the list, in particular those that read the environment or
the clock or are random (``getenv``, ``current_setting``, ``now``,
``current_date``, ``random``, ``uuid``...) and those whose result's size an
argument sets (``repeat``, ``lpad``, ``rpad``, ``printf``, ``range``,
lists...): ``TRY`` absorbs a value that fails, not gigabytes allocated on
every row, so no value may grow by more than the expression writes out
itself. For the same reason ``replace(x, from, to)`` needs constant texts,
``to`` no longer than ``from``, and ``regexp_replace(x, pattern, replacement
[, options])`` a constant replacement without ``\\`` (no back-reference),
constant options and, with the ``g`` option, an empty replacement (a pattern
that matches the empty text would insert it at every position). The check
walks DuckDB's own parse tree (``json_serialize_sql``), so what is checked is
what DuckDB runs, and it fails closed: a node of a kind it does not know is
refused. It returns the columns the expression reads: they join the model's
input schema (``FeatureSpec.raw_inputs``).

**Types.** An expression reads each column as the data contract declares it
(:data:`CONTRACT_TYPES`: ``integer`` is ``BIGINT``, ``number`` ``DOUBLE``,
``string`` ``VARCHAR``, ``boolean``, ``date``, ``timestamp`` a UTC
``TIMESTAMPTZ``), not as pandas happens to hold it: validated rows keep
integers as float64, on which DuckDB's ``//`` would divide without flooring
and ``make_date`` would not bind. A value that is not of its column's type
(raw rows handed to the logged model) reads as null, and so does a number
that is not whole in an ``integer`` column (``1730.6`` is null, not rounded to
``1731``; validation quarantines such a value, so no validated row holds
one). DuckDB's own semantics apply otherwise; note that ``dayofweek`` counts
from Sunday = 0, where the registered ``day_of_week`` (pandas) counts from
Monday = 0: that one is ``isodow(make_date(year, month, day)) - 1``.

**Evaluation** (:func:`evaluate`) runs every expression of a feature spec in
one query over the raw rows, in an in-memory DuckDB database opened once per
process (never pickled; a forked child opens its own) with
``enable_external_access=false`` (no file, network, extension install or
load, ``ATTACH`` or ``COPY``), extension autoloading off, ``TimeZone=UTC``
(date parts of time-zoned values do not depend on the machine) and its
configuration locked. Even an expression that bypassed the check could not
read a file through it. The query runs the expression as DuckDB re-renders
the checked parse tree, never the text as written, so a comment in the text
cannot swallow the rest of the query. Rows come back in their input order
and number (a row-number column, ``ORDER BY`` it, verified), with the input's
index. A numeric feature is ``float64`` (NaN for null); a categorical one is
an ``object`` column of strings with ``None`` for null, as
:func:`~pipelines.core.features.make_features` makes them.

**Errors while evaluating.** Each expression is evaluated under DuckDB's
``TRY``: a value it cannot compute on a row (a failed ``CAST``, an invalid
date from ``make_date``, a division by zero, an overflow) makes that row's
feature null, not the batch fail, the same as the registered derived
features' ``errors="coerce"``; the model treats it as a missing value. The
alternative, failing the whole partition on one bad row, would halt scoring
over a value the data contract let through; write ``CASE`` or ``COALESCE``
when null is not what you want. What ``TRY`` cannot absorb is a property of
the expression, not of a row: types that do not fit (``origin + 1`` on a
string column) or a numeric feature whose value is not a number. That raises
:class:`ExpressionError` (a ``ConfigError``, exit 2) naming the feature, its
expression and DuckDB's reason, when training first computes the features.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

#: Deterministic scalar functions an expression may call (DuckDB names, lower case).
ALLOWED_FUNCTIONS = frozenset(
    # math
    "abs ceil ceiling floor round trunc sign sqrt cbrt exp ln log log2 log10 pow power greatest least "
    "isnan isinf isfinite even gcd lcm pi radians degrees sin cos tan asin acos atan atan2 fmod "
    # conditional (CASE, COALESCE and TRY are expressions of their own)
    "if nullif "
    # text
    "lower upper lcase ucase length strlen substring substr left right trim ltrim rtrim replace "
    "concat concat_ws contains starts_with ends_with prefix suffix strpos instr split_part reverse "
    "regexp_matches regexp_replace regexp_extract regexp_full_match ascii chr strip_accents nfc_normalize "
    # dates and times
    "make_date make_time make_timestamp date_part datepart year month day dayofmonth dayofweek weekday isodow "
    "dayofyear week weekofyear quarter hour minute second millisecond yearweek isoyear date_diff datediff "
    "date_sub datesub date_trunc datetrunc last_day dayname monthname strftime strptime try_strptime epoch "
    # interval literals (INTERVAL 1 DAY is to_days(1))
    "to_years to_months to_weeks to_days to_hours to_minutes to_seconds to_milliseconds to_microseconds".split()
)

#: Functions refused because an argument sets their result's size (named in the refusal; the list above is
#: what is allowed, so a function missing here but absent from it is refused all the same).
SIZE_SETTING_FUNCTIONS = frozenset(
    "repeat lpad rpad printf format space range generate_series list_resize array_resize string_split "
    "str_split string_split_regex str_split_regex regexp_split_to_array list_value array_value bar".split()
)

#: Operators (DuckDB parses them as functions of these names).
ALLOWED_OPERATORS = frozenset(
    {"+", "-", "*", "/", "//", "%", "^", "**", "||", "~~", "!~~", "~~*", "!~~*"}  # ~~ is LIKE, ~~* ILIKE
)

#: Parse-tree nodes an expression may hold, by ``class`` and ``type`` (functions are checked by name).
ALLOWED_NODES: dict[str, frozenset[str]] = {
    "COLUMN_REF": frozenset({"COLUMN_REF"}),
    "CONSTANT": frozenset({"VALUE_CONSTANT"}),
    "FUNCTION": frozenset({"FUNCTION"}),
    "CAST": frozenset({"OPERATOR_CAST"}),
    "CASE": frozenset({"CASE_EXPR"}),
    "BETWEEN": frozenset({"COMPARE_BETWEEN", "COMPARE_NOT_BETWEEN"}),
    "CONJUNCTION": frozenset({"CONJUNCTION_AND", "CONJUNCTION_OR"}),
    "COMPARISON": frozenset(
        {
            "COMPARE_EQUAL",
            "COMPARE_NOTEQUAL",
            "COMPARE_LESSTHAN",
            "COMPARE_GREATERTHAN",
            "COMPARE_LESSTHANOREQUALTO",
            "COMPARE_GREATERTHANOREQUALTO",
            "COMPARE_DISTINCT_FROM",
            "COMPARE_NOT_DISTINCT_FROM",
        }
    ),
    "OPERATOR": frozenset(
        {
            "OPERATOR_NOT",
            "OPERATOR_IS_NULL",
            "OPERATOR_IS_NOT_NULL",
            "OPERATOR_COALESCE",
            "OPERATOR_TRY",
            "COMPARE_IN",
            "COMPARE_NOT_IN",
        }
    ),
    "TYPE": frozenset({"TYPE"}),  # the target of a CAST
}

#: Scalar types a CAST may target (as DuckDB's parser spells them, aliases included).
ALLOWED_TYPES = frozenset(
    "BOOLEAN BOOL LOGICAL TINYINT INT1 SMALLINT INT2 SHORT INT16 INTEGER INT INT4 INT32 SIGNED BIGINT INT8 LONG "
    "INT64 HUGEINT INT128 UTINYINT USMALLINT UINTEGER UBIGINT UHUGEINT FLOAT FLOAT4 REAL DOUBLE FLOAT8 DECIMAL "
    "NUMERIC VARCHAR TEXT STRING CHAR BPCHAR DATE TIME TIMESTAMP DATETIME INTERVAL".split()
)

#: DuckDB result types a numeric feature may have (anything else is a config error, not a silent null).
_NUMERIC_RESULT = (
    *("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"),
    *("UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "BOOLEAN", '"NULL"', "NULL"),
)

#: The statement keys of a parsed ``SELECT <expr>`` and the value each must have (no FROM, WHERE, ...).
_EMPTY_CLAUSES = {
    "where_clause": None,
    "group_expressions": [],
    "group_sets": [],
    "having": None,
    "sample": None,
    "qualify": None,
    "modifiers": [],
    "aggregate_handling": "STANDARD_HANDLING",
}


class ExpressionError(ConfigError):
    """An expression feature does not fit the rows it is evaluated on (types, or a non-numeric value)."""


#: The DuckDB type an expression reads a column of each contract logical type as.
CONTRACT_TYPES = {
    "integer": "BIGINT",
    "number": "DOUBLE",
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}


@dataclass(frozen=True)
class Expression:
    """A checked expression feature (picklable: it travels inside the logged model's feature spec).

    Attributes:
        name: the feature's name (its output column).
        expr: the expression as written in the config.
        kind: ``numeric`` (float64) or ``categorical`` (strings).
        calendar: a calendar position (left out of drift monitoring by default).
        inputs: the raw columns it reads, in the order it first reads them.
        types: the DuckDB type it reads each input as (:data:`CONTRACT_TYPES` of the contract's
            logical types), aligned with ``inputs``; empty: as the rows hold them.
    """

    name: str
    expr: str
    kind: str
    calendar: bool = False
    inputs: tuple[str, ...] = ()
    types: tuple[str, ...] = ()


# ---- checking


class _Refused(Exception):
    """Why an expression is refused (turned into a ConfigError naming it)."""


def check(expr: str, columns: Collection[str] | None = None, *, where: str = "expression") -> tuple[str, ...]:
    """Check that ``expr`` is a safe scalar expression; the columns it reads.

    Args:
        expr: the expression as written in the config.
        columns: the columns it may read (the data contract's); ``None`` checks the form only.
        where: what to name in an error (``<config file>: features.expressions.<name>``).

    Raises:
        ConfigError: the expression does not parse, is not one scalar expression, reads a column not in
            ``columns``, or uses anything the language does not allow; the message says which and why.
    """
    try:
        _, inputs = _compiled(expr)
    except _Refused as exc:
        raise ConfigError(f"{where}: {expr!r}: {exc}") from None
    if columns is not None:
        unknown = [c for c in inputs if c not in columns]
        if unknown:
            raise ConfigError(f"{where}: {expr!r} reads {unknown}, which are not columns of the data contract")
    return inputs


@functools.lru_cache(maxsize=1024)
def _compiled(expr: str) -> tuple[str, tuple[str, ...]]:
    """The checked expression as DuckDB renders its parse tree, and the columns it reads (cached: pure)."""
    if not isinstance(expr, str) or not expr.strip():
        raise _Refused("empty expression")
    try:
        tree = _parse(f"SELECT {expr}")
        statements = tree.get("statements") or []
        if len(statements) != 1:
            raise _Refused(f"one expression expected, found {len(statements)} statements")
        node = statements[0].get("node") or {}
        _check_select(node, statements[0])
        inputs: list[str] = []
        for sub in _walk(node["select_list"][0]):
            _check_node(sub)
            if sub["class"] == "COLUMN_REF":
                inputs.append(sub["column_names"][0])
        rendered = _render(tree)
        # What runs is DuckDB's rendering of the checked tree, so it must parse back to that very tree.
        if not rendered.startswith("SELECT ") or _without_locations(_parse(rendered)) != _without_locations(tree):
            raise _Refused(f"DuckDB renders it as {rendered!r}, which does not parse back to it")
    except RecursionError:
        raise _Refused("nested too deeply") from None
    return rendered.removeprefix("SELECT "), tuple(dict.fromkeys(inputs))


def _parse(sql: str) -> dict[str, Any]:
    """DuckDB's parse tree of ``sql`` (``json_serialize_sql``), or why it does not parse."""
    with _cursor() as con:
        raw = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]
    tree = json.loads(raw)
    if tree.get("error"):
        reason = tree.get("error_message", "does not parse")
        if "Only SELECT" in reason:
            reason = "not a scalar expression (it holds a statement other than SELECT)"
        raise _Refused(reason.splitlines()[0])
    return tree


def _render(tree: dict[str, Any]) -> str:
    """SQL text of a checked parse tree, as DuckDB writes it back (no comment survives the parser)."""
    with _cursor() as con:
        return con.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchall()[0][0]


_LOCATION_KEYS = ("query_location", "query_location_length")


def _without_locations(tree: Any) -> Any:
    """A parse tree without its source positions (which differ between a text and its rendering)."""
    if isinstance(tree, dict):
        return {k: _without_locations(v) for k, v in tree.items() if k not in _LOCATION_KEYS}
    if isinstance(tree, list):
        return [_without_locations(v) for v in tree]
    return tree


def _check_select(node: dict[str, Any], statement: dict[str, Any]) -> None:
    """The statement must be ``SELECT <one expression>``: no FROM, WHERE, GROUP BY, WITH, DISTINCT, LIMIT..."""
    if node.get("type") != "SELECT_NODE":
        raise _Refused("not a scalar expression (set operations and other query forms are not allowed)")
    if (node.get("from_table") or {}).get("type") != "EMPTY":
        raise _Refused("FROM is not allowed: an expression reads the row's columns, never a table or a file")
    for key, empty in _EMPTY_CLAUSES.items():
        if node.get(key, empty) != empty:
            raise _Refused(f"not a scalar expression ({key.replace('_', ' ')} is not allowed)")
    if (node.get("cte_map") or {}).get("map"):
        raise _Refused("WITH is not allowed")
    if statement.get("named_param_map"):
        raise _Refused("parameters are not allowed")
    if len(node.get("select_list") or []) != 1:
        raise _Refused(f"one expression expected, found {len(node.get('select_list') or [])} (a comma?)")
    if node["select_list"][0].get("alias"):
        raise _Refused("an alias (AS) is not allowed: the feature's name is its key in the config")
    if any(_walk({k: v for k, v in node.items() if k != "select_list"})):  # a clause this check does not know
        raise _Refused("not a scalar expression (it has a clause besides the expression)")


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every expression node under ``node`` (any dict with a ``class``), whatever key holds it."""
    if isinstance(node, dict):
        if "class" in node:
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _check_node(node: dict[str, Any]) -> None:
    """One parse-tree node against the allow lists."""
    cls, kind = node.get("class"), node.get("type")
    if cls not in ALLOWED_NODES or kind not in ALLOWED_NODES[cls]:
        raise _Refused(f"{_describe(cls, kind)} is not allowed")
    if cls == "COLUMN_REF" and len(node.get("column_names", [])) != 1:
        raise _Refused(f"qualified name {'.'.join(node.get('column_names', []))!r}: name a column alone")
    elif cls == "FUNCTION":
        _check_function(node)
    elif cls == "TYPE":
        name = str(node.get("type_name", "")).upper()
        if name not in ALLOWED_TYPES or node.get("schema") or node.get("catalog"):
            raise _Refused(f"CAST to {name or node.get('type_name')!r} is not allowed (a scalar type only)")


def _check_function(node: dict[str, Any]) -> None:
    name = str(node.get("function_name", "")).lower()
    if node.get("schema") or node.get("catalog"):
        raise _Refused(f"function {node.get('schema') or node.get('catalog')}.{name}: qualified names are not allowed")
    allowed = ALLOWED_OPERATORS if node.get("is_operator") else ALLOWED_FUNCTIONS
    if name in SIZE_SETTING_FUNCTIONS:
        raise _Refused(
            f"function {name!r} is not allowed: an argument sets the size of its result, and TRY cannot absorb "
            "gigabytes allocated on every row"
        )
    if name not in allowed:
        raise _Refused(
            f"function {name!r} is not allowed (only deterministic scalar functions: no table, aggregate, "
            "environment, clock or random function; see pipelines.core.expressions.ALLOWED_FUNCTIONS)"
        )
    if node.get("distinct") or node.get("filter") is not None or (node.get("order_bys") or {}).get("orders"):
        raise _Refused(f"{name}: DISTINCT, FILTER and ORDER BY belong to aggregates, which are not allowed")
    if node.get("export_state") or any(arg.get("name") for arg in node.get("arguments", [])):
        raise _Refused(f"{name}: named arguments are not allowed")
    if name in _SIZE_CHECKS:
        _SIZE_CHECKS[name]([_literal(arg.get("expression")) for arg in node.get("arguments", [])])


def _literal(node: Any) -> str | None:
    """The text of a string constant (``'...'``), or None for anything else (a column, a call, a number)."""
    if not isinstance(node, dict) or node.get("class") != "CONSTANT":
        return None
    literal = node.get("literal") or {}
    return literal.get("text") if literal.get("kind") == "STRING" and isinstance(literal.get("text"), str) else None


_GROWS = "the result could grow without bound (a value may not outgrow what the expression writes out)"


def _check_replace(args: list[str | None]) -> None:
    """``replace(x, from, to)``: constant texts, ``to`` no longer than ``from`` (the result is never longer)."""
    if len(args) != 3 or args[1] is None or args[2] is None:
        raise _Refused(f"replace: the text replaced and its replacement must be constant texts: {_GROWS}")
    if len(args[2].encode()) > len(args[1].encode()):
        raise _Refused(f"replace: a replacement longer than the text it replaces is not allowed: {_GROWS}")


def _check_regexp_replace(args: list[str | None]) -> None:
    """``regexp_replace(x, pattern, replacement[, options])``: a constant replacement without a back-reference,
    constant options, and with ``g`` an empty replacement (an empty match would take it at every position)."""
    replacement, options = (args[2] if len(args) > 2 else None), (args[3] if len(args) > 3 else "")
    if len(args) not in (3, 4) or replacement is None or options is None:
        raise _Refused(f"regexp_replace: the replacement and the options must be constant texts: {_GROWS}")
    if "\\" in replacement:
        raise _Refused(f"regexp_replace: a back-reference (\\) in the replacement is not allowed: {_GROWS}")
    if "g" in options and replacement:
        raise _Refused(
            f"regexp_replace: with the g option only an empty replacement is allowed: {_GROWS}; "
            "replace() a constant text instead"
        )


#: Functions allowed only in a form whose result cannot outgrow its input (see the module doc).
_SIZE_CHECKS = {"replace": _check_replace, "regexp_replace": _check_regexp_replace}


def _describe(cls: Any, kind: Any) -> str:
    """A node kind in words, for the error message."""
    known = {
        "SUBQUERY": "a subquery",
        "STAR": "* (all columns)",
        "WINDOW": "a window function",
        "LAMBDA": "a lambda",
        "PARAMETER": "a parameter",
        "COLLATE": "COLLATE",
    }
    return known.get(str(cls), f"{kind or cls}")


# ---- evaluating

_STATE: dict[str, Any] = {}
_LOCK = threading.Lock()


def _connection() -> Any:
    """This process's locked-down, in-memory DuckDB database (opened once; a fork opens its own)."""
    with _LOCK:
        if _STATE.get("pid") != os.getpid():
            import duckdb

            con = duckdb.connect(
                ":memory:",
                config={
                    "enable_external_access": False,
                    "autoload_known_extensions": False,
                    "autoinstall_known_extensions": False,
                    "allow_community_extensions": False,
                    "allow_unsigned_extensions": False,
                },
            )
            con.execute("SET TimeZone = 'UTC'").fetchall()
            con.execute("SET lock_configuration = true").fetchall()
            _STATE.update(pid=os.getpid(), con=con)
        return _STATE["con"]


@contextlib.contextmanager
def _cursor() -> Iterator[Any]:
    """A fresh connection to the process's database (its own registered views), closed after use."""
    con = _connection().cursor()
    try:
        yield con
    finally:
        con.close()


def evaluate(df: pd.DataFrame, expressions: Sequence[Expression]) -> pd.DataFrame:
    """Every expression on the rows of ``df``, in one DuckDB query: one column per feature, ``df``'s index.

    Raises:
        ConfigError: an expression is refused (a spec built around :func:`check`).
        ExpressionError: an expression does not fit the rows' types, or a numeric one returns no number.
    """
    import pandas as pd

    columns = evaluate_arrow(df, expressions)
    return pd.DataFrame({e.name: _to_pandas(columns[e.name], e.kind) for e in expressions}, index=df.index)


def evaluate_arrow(rows: Any, expressions: Sequence[Expression]) -> dict[str, Any]:
    """Every expression on ``rows`` (a pandas frame or an Arrow table), in one DuckDB query: ``{name: Arrow array}``
    in the rows' order (DuckDB reads an Arrow table's buffers as they are).

    Raises:
        ConfigError: an expression is refused, or the rows lack a column an expression reads.
        ExpressionError: an expression does not fit the rows' types, or a numeric one returns no number.
    """
    import numpy as np

    if not expressions:
        return {}
    compiled = {e.name: _compiled_or_refused(e) for e in expressions}
    # The columns read are the checked tree's, never taken on trust from the spec: every name the
    # query reads is an input column, so none can fall through to a function (``current_date``).
    inputs = list(dict.fromkeys(c for _sql, cols in compiled.values() for c in cols))
    names = rows.column_names if hasattr(rows, "column_names") else list(rows.columns)
    missing = [c for c in inputs if c not in names]
    if missing:
        raise ConfigError(f"input rows lack columns {missing} that expression features read")
    row = _row_column(inputs)
    items = "".join(f",\n  TRY({compiled[e.name][0]}) AS {_quote(e.name)}" for e in expressions)
    typed = _typed_rows(expressions, inputs)
    query = f"SELECT {_quote(row)}{items}\nFROM ({typed}) ORDER BY {_quote(row)}"
    with _cursor() as con:
        con.register("expression_rows", _arrow_rows(rows, inputs, row))
        try:
            rel = con.sql(query)
            _check_kinds(expressions, dict(zip(rel.columns[1:], (str(t) for t in rel.types[1:]), strict=True)))
            result = rel.fetch_arrow_table()
        except ExpressionError:
            raise
        except Exception as exc:  # noqa: BLE001 - a DuckDB error: which expression is at fault is found below
            raise _blame(con, expressions, compiled, typed, exc) from None
    order = result.column(row).to_numpy()
    if len(order) != len(rows) or not np.array_equal(order, np.arange(len(rows))):
        raise RuntimeError(f"DuckDB returned {len(order)} rows, not the {len(rows)} input rows in their order")
    return {e.name: result.column(e.name).combine_chunks() for e in expressions}


def _typed_rows(expressions: Sequence[Expression], inputs: list[str]) -> str:
    """The registered rows with each input read as its contract type (a value that is not one is null)."""
    types: dict[str, str] = {}
    for e in expressions:
        for col, typ in zip(e.inputs, e.types, strict=False):
            if typ and col in inputs:
                types.setdefault(col, typ)
    casts = []
    for col, typ in types.items():
        if typ not in CONTRACT_TYPES.values():  # the spec travels in a pickle: never trust it into SQL
            raise ConfigError(f"expression input {col!r}: unknown type {typ!r}")
        casts.append(f"{_read_as(_quote(col), typ)} AS {_quote(col)}")
    if not casts:
        return "SELECT * FROM expression_rows"
    return f"SELECT * REPLACE ({', '.join(casts)}) FROM expression_rows"  # noqa: S608 - quoted names, known types


def _read_as(column: str, typ: str) -> str:
    """SQL reading a (quoted) column as ``typ``: null for a value that is not one, a non-whole number included
    (a plain cast to BIGINT would round ``1730.6`` to ``1731``)."""
    if typ != "BIGINT":
        return f"TRY_CAST({column} AS {typ})"
    whole = f"TRY_CAST({column} AS BIGINT)"
    return f"CASE WHEN {whole} = TRY_CAST({column} AS DOUBLE) THEN {whole} END"


def _compiled_or_refused(e: Expression) -> tuple[str, tuple[str, ...]]:
    try:
        return _compiled(e.expr)
    except _Refused as exc:
        raise ConfigError(f"expression feature {e.name!r}: {e.expr!r}: {exc}") from None


def quote_identifier(name: str) -> str:
    """``name`` as a DuckDB identifier an expression can read whatever it is (a keyword, spaces, capitals)."""
    return '"' + name.replace('"', '""') + '"'


_quote = quote_identifier


def _row_column(inputs: list[str]) -> str:
    """A name for the row-number column that no input column has."""
    name = "__row__"
    while name in inputs:
        name = f"_{name}_"
    return name


def _arrow_rows(rows: Any, inputs: list[str], row: str) -> Any:
    """The input columns as an Arrow table, with the row number (position, whatever a frame's index)."""
    import numpy as np
    import pyarrow as pa

    table = pa.table({row: pa.array(np.arange(len(rows), dtype="int64"))})
    for col in inputs:
        if isinstance(rows, pa.Table):
            table = table.append_column(col, rows.column(col))
            continue
        try:
            table = table.append_column(col, pa.Array.from_pandas(rows[col]))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ExpressionError(f"input column {col!r} holds mixed or unsupported values: {exc}") from None
    return table


def _check_kinds(expressions: Sequence[Expression], types: dict[str, str]) -> None:
    for e in expressions:
        if e.kind == "numeric" and not types[e.name].startswith(_NUMERIC_RESULT):
            raise ExpressionError(
                f"expression feature {e.name!r}: {e.expr!r} is {types[e.name]}, not a number: declare it "
                "kind: categorical, or convert it (CAST, date_part...)"
            )


def _blame(
    con: Any,
    expressions: Sequence[Expression],
    compiled: dict[str, tuple[str, tuple[str, ...]]],
    typed: str,
    exc: Exception,
) -> ExpressionError:
    """A named error for a failed query: the first expression that fails alone, with DuckDB's reason."""
    for e in expressions:
        try:
            probe = f"SELECT TRY({compiled[e.name][0]}) FROM ({typed}) LIMIT 0"  # noqa: S608 - checked
            con.sql(probe).fetchall()
        except Exception as alone:  # noqa: BLE001 - any DuckDB error is the expression's
            reason = str(alone).splitlines()[0]
            return ExpressionError(f"expression feature {e.name!r}: {e.expr!r} cannot be evaluated: {reason}")
    names = [e.name for e in expressions]
    return ExpressionError(f"expression features {names} cannot be evaluated: {str(exc).splitlines()[0]}")


def _to_pandas(column: Any, kind: str) -> Any:
    """A result column as make_features types it: float64 with NaN, or object strings with None."""
    import pyarrow as pa

    if kind == "numeric":
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    values = column if pa.types.is_string(column.type) else column.cast(pa.string())
    return values.to_numpy(zero_copy_only=False)
