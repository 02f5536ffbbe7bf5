"""Data contracts: an ODCS v3 YAML file read into a :class:`Contract` of columns and rules.

A contract is read with the ``open-data-contract-standard`` package and turned
into a flat list of :class:`Rule`. Each rule has an id, a severity and the
action that severity maps to (``halt``, ``quarantine`` or ``warn``). Every
stage reads the contract (its columns, natural key and version); the ingest
stage compiles its rules into a Great Expectations suite and row masks
(:mod:`pipelines.ingest.rules`).

Supported quality entries (property level unless noted):

| ODCS entry | rule kind | GX expectation |
|---|---|---|
| ``required: true`` on a property | ``not_null`` | ExpectColumnValuesToNotBeNull |
| ``metric: invalidValues`` + ``arguments.minimum/maximum`` | ``range`` | ExpectColumnValuesToBeBetween |
| ``metric: invalidValues`` + ``arguments.validValues`` | ``in_set`` | ExpectColumnValuesToBeInSet |
| ``metric: invalidValues`` + ``arguments.pattern`` | ``pattern`` | ExpectColumnValuesToMatchRegex |
| ``metric: nullValues`` | ``not_null`` | ExpectColumnValuesToNotBeNull |
| schema ``metric: duplicateValues`` + ``arguments.properties`` | ``unique`` | ExpectCompoundColumnsToBeUnique |
| schema ``metric: rowCount`` + ``mustBeBetween`` | ``row_count`` | ExpectTableRowCountToBeBetween |
| schema ``type: custom``, ``engine: pipelines``, | ``partition_date`` | ExpectColumnValuesToBeInSet |
| ``implementation: partitionDateMatches`` + ``arguments: {year, month, day}`` | | (one per date part) |
| the same + ``arguments: {column}`` naming a ``date`` column | ``partition_date`` | ExpectColumnValuesToBeBetween |
| | | (the partition day) |
| the same + ``arguments: {column, timezone}`` naming a | ``partition_date`` | ExpectColumnValuesToBeBetween |
| ``timestamp`` column (``timezone`` default ``UTC``) | | (UTC bounds, ``strict_max``) |

``partitionDateMatches`` takes exactly one of two argument forms: three
integer columns (``{year: year, month: month, day: day}``: each must equal the
partition day's part), or one column (``{column: flight_date}``). A ``date``
column's value must be the partition day. A ``timestamp`` column's instant,
seen in ``timezone`` (an IANA name, default ``UTC``), must fall in
``[local midnight, next local midnight)`` of the partition day: both ends are
converted to UTC instants once (so a 23- or 25-hour DST day is exact) and the
typed column, held in UTC, is compared with them. ``timezone`` is also the
zone of that column's values delivered **without an offset** (``2013-01-01
05:17:00``, a Parquet timestamp without a time zone): they are read as local
times there, for the rule and for the published value; a local time that does
not exist (the hour skipped in spring) or exists twice (the hour repeated in
autumn) names no single instant and is a ``type_mismatch``. Values with an
offset (``2013-01-01T05:17:00-05:00``, ``Z``) keep their instant. Without a
``timezone`` (every other timestamp column), values without an offset are UTC.
Both forms ignore nulls (a null is the ``required`` rule's business).

Parse-stage rules, applied while reading files: ``type_mismatch`` (a value
that cannot be read as its column's type, such as a ``date`` with a time of
day: :func:`pipelines.ingest.landing.coerce_column`), ``missing_column`` (a
file lacks a contract column) and ``malformed_row`` (a CSV record that does
not split into the header's columns, or whose values span several lines),
plus the delivery rules ``empty_file`` (a data file with no records),
``delivery_incomplete`` (an expected source is missing or short, see
``expectedSources``), ``quarantine_rate`` and ``unsafe_file_name``.

Every severity/action combination either works end to end or is refused here,
when the contract loads (:data:`ALLOWED_ACTIONS`): a row that cannot be read
(type mismatch, malformed) or a required value that is missing cannot be
published, so those rules may quarantine or halt but not warn; a rule about the
whole delivery (row count, empty file, incomplete delivery) has no rows to
quarantine, so it halts or warns. Rule arguments are typed (numbers for
ranges and row counts, values of the column's type for allowed sets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.core.errors import ConfigError

ACTIONS = ("halt", "quarantine", "warn")
#: Column names a contract cannot use, and why.
RESERVED_COLUMNS = {
    "ds": "the partition column of every Hive-partitioned table (validated, quarantine, scores)",
}
#: Columns the scores table adds beside the natural key (``pipelines/scoring/chunks.py``).
SCORES_COLUMNS = (
    "row_id",
    "score",
    "label",
    "model_name",
    "model_version",
    "mlflow_run_id",
    "training_fingerprint",
    "contract_version",
    "ds",
)

LOGICAL_TYPES = ("integer", "number", "string", "timestamp", "date", "boolean")

TYPE_MISMATCH = "type_mismatch"
MISSING_COLUMN = "missing_column"
MALFORMED_ROW = "malformed_row"
UNSAFE_FILE_NAME = "unsafe_file_name"
QUARANTINE_RATE = "quarantine_rate"
FILE_UNREADABLE = "file_unreadable"
EMPTY_FILE = "empty_file"
DELIVERY_INCOMPLETE = "delivery_incomplete"
RESERVED_RULE_IDS = frozenset(
    {TYPE_MISMATCH, MISSING_COLUMN, MALFORMED_ROW, UNSAFE_FILE_NAME, QUARANTINE_RATE, FILE_UNREADABLE, EMPTY_FILE}
    | {DELIVERY_INCOMPLETE}
)

#: Rule kinds that judge the whole delivery: they have no rows to quarantine.
DELIVERY_KINDS = ("row_count", QUARANTINE_RATE, MALFORMED_ROW, UNSAFE_FILE_NAME, EMPTY_FILE, DELIVERY_INCOMPLETE)

#: The actions each kind of rule can carry out end to end (others are refused when the contract loads).
ALLOWED_ACTIONS: dict[str, tuple[str, ...]] = {
    # A value that cannot be read as its type would be published as null: never silently.
    TYPE_MISMATCH: ("quarantine", "halt"),
    # A record that does not split into columns has no values to publish.
    MALFORMED_ROW: ("quarantine", "halt"),
    # The generated not-null rule of a required column: the column is non-nullable in validated/.
    "required": ("quarantine", "halt"),
    "row_count": ("halt", "warn"),
    EMPTY_FILE: ("halt", "warn"),
    DELIVERY_INCOMPLETE: ("halt", "warn"),
}


@dataclass(frozen=True)
class Column:
    """A contract column."""

    name: str
    logical_type: str
    required: bool = False
    primary_key: bool = False
    description: str = ""
    #: The IANA time zone a timestamp column's values without an offset are
    #: read in: a ``partitionDateMatches`` rule's ``timezone`` on the column, else UTC.
    timezone: str = "UTC"


@dataclass(frozen=True)
class Rule:
    """One contract rule with its severity and action."""

    id: str
    kind: str
    severity: str
    action: str
    columns: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    description: str = ""

    @property
    def row_level(self) -> bool:
        return self.kind not in DELIVERY_KINDS


@dataclass(frozen=True)
class ExpectedSources:
    """What a complete delivery holds: one file (or more) per expected source, each with a minimum share of records.

    ``file`` is a regular expression with a named group ``source``, matched
    against each landed file's name (``flights_(?P<source>[A-Z]{3})\\.csv``);
    files it does not match, or of sources not listed, are validated as usual
    but do not count toward completeness.
    """

    file: str
    sources: tuple[str, ...]
    min_share: float

    def source_of(self, name: str) -> str | None:
        import re

        m = re.fullmatch(self.file, name)
        return m.group("source") if m else None


@dataclass(frozen=True)
class Contract:
    """A compiled data contract."""

    id: str
    name: str
    version: str
    columns: tuple[Column, ...]
    rules: tuple[Rule, ...]
    max_quarantine_rate: float
    severity_actions: dict[str, str]
    source: str
    type_mismatch_rule: Rule
    missing_column_rule: Rule
    malformed_row_rule: Rule
    empty_file_rule: Rule
    incomplete_delivery_rule: Rule
    expected_sources: ExpectedSources | None = None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def primary_key(self) -> list[str]:
        return [c.name for c in self.columns if c.primary_key]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def rule(self, rule_id: str) -> Rule:
        for rule in self.all_rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    @property
    def all_rules(self) -> tuple[Rule, ...]:
        rate = Rule(
            id=QUARANTINE_RATE,
            kind=QUARANTINE_RATE,
            severity="critical",
            action="halt",
            params={"max_rate": self.max_quarantine_rate},
            description=f"halt when more than {self.max_quarantine_rate:.1%} of landed rows are quarantined",
        )
        unsafe = Rule(
            id=UNSAFE_FILE_NAME,
            kind=UNSAFE_FILE_NAME,
            severity="critical",
            action="halt",
            description=(
                "a landed file cannot be read or copied (a name unsafe as a storage key, no permission): "
                "its rows cannot be accounted for"
            ),
        )
        return (
            self.type_mismatch_rule,
            self.missing_column_rule,
            self.malformed_row_rule,
            self.empty_file_rule,
            *((self.incomplete_delivery_rule,) if self.expected_sources else ()),
            *self.rules,
            rate,
            unsafe,
        )


def _custom_properties(items: list[Any] | None) -> dict[str, Any]:
    return {item.property: item.value for item in items or [] if item.property}


def load_contract(path: str | Path) -> Contract:
    """Read an ODCS v3 contract and compile its rules.

    Raises:
        ConfigError: unreadable file (missing, not UTF-8, not YAML, not ODCS
            v3), a rule this compiler does not support, a rule argument of the
            wrong type, or a severity whose action the rule cannot carry out
            (named with the rule and the problem).
    """
    path = Path(path)
    odcs = _read_odcs(path)

    def fail(msg: str) -> ConfigError:
        return ConfigError(f"{path}: {msg}")

    props = _custom_properties(odcs.customProperties)
    actions, action_of = _severity_actions(props, fail)
    max_rate = _share(props.get("maxQuarantineRate", 0.05), "customProperties.maxQuarantineRate", fail)
    table = odcs.schema_[0]
    columns, rules = _columns(table, props, action_of, fail)
    by_name = {c.name: c for c in columns}
    rules += [_table_rule(q, by_name, action_of, fail) for q in table.quality or []]
    _check_rule_ids(rules, fail)
    columns = _with_time_zones(columns, rules, fail)
    return Contract(
        id=odcs.id or table.name or path.stem,
        name=table.name or path.stem,
        version=str(odcs.version),
        columns=tuple(columns),
        rules=tuple(rules),
        max_quarantine_rate=max_rate,
        severity_actions=dict(actions),
        source=str(path),
        expected_sources=_expected_sources(props.get("expectedSources"), fail),
        **_parse_stage_rules(props, action_of),
    )


def _read_odcs(path: Path) -> Any:
    """The ODCS document, with the header this compiler needs (v3, a version, one schema object)."""
    from open_data_contract_standard.model import OpenDataContractStandard
    from pydantic import ValidationError

    from pipelines.core.config import read_yaml

    if not path.is_file():
        raise ConfigError(f"{path}: data contract not found")
    data = read_yaml(path)  # named errors for bytes that are not UTF-8 and for invalid YAML
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a valid ODCS v3 contract: expected a mapping, got {type(data).__name__}")
    try:
        odcs = OpenDataContractStandard(**data)
    except (ValidationError, TypeError) as exc:
        raise ConfigError(f"{path}: not a valid ODCS v3 contract: {str(exc).splitlines()[0]}") from None
    if not odcs.apiVersion or not odcs.apiVersion.startswith("v3"):
        raise ConfigError(f"{path}: apiVersion: expected v3.x (got {odcs.apiVersion!r})")
    if not odcs.version:
        raise ConfigError(f"{path}: version: a contract version is required")
    if not odcs.schema_ or len(odcs.schema_) != 1:
        raise ConfigError(f"{path}: schema: exactly one schema object (the dataset's table) is supported")
    return odcs


def _severity_actions(props: dict[str, Any], fail: Any) -> tuple[dict[str, str], Any]:
    """The contract's ``severityActions``, and ``action_of(severity, where, kind) -> (severity, action)`` under them.

    ``kind`` (a key of :data:`ALLOWED_ACTIONS`) refuses an action the rule cannot carry out.
    """
    actions = props.get("severityActions") or {"critical": "halt", "error": "quarantine", "warning": "warn"}
    if (
        not isinstance(actions, dict)
        or not all(isinstance(k, str) for k in actions)
        or any(a not in ACTIONS for a in actions.values())
    ):
        raise fail(f"customProperties.severityActions: a map of severity names to one of {ACTIONS}")

    def action_of(severity: Any, where: str, kind: str | None = None) -> tuple[str, str]:
        if not severity:
            raise fail(f"{where}: severity is required")
        if not isinstance(severity, str) or severity not in actions:
            raise fail(f"{where}: severity {severity!r} has no action (known: {sorted(actions)})")
        action = actions[severity]
        allowed = ALLOWED_ACTIONS.get(kind or "", ACTIONS)
        if action not in allowed:
            raise fail(
                f"{where}: severity {severity!r} maps to {action!r}, which this rule cannot do "
                f"(allowed: {', '.join(allowed)})"
            )
        return severity, action

    return actions, action_of


def _number(value: Any, where: str, fail: Any, *, integer: bool = False) -> float | int | None:
    """A typed numeric rule argument (``None`` stays ``None``); strings and booleans are refused."""
    import math

    if value is None:
        return None
    try:
        finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an integer beyond what a float holds
        finite = False
    if not finite:
        raise fail(f"{where}: expected a finite number, got {str(value)[:40]!r}")
    if integer and value != int(value):
        raise fail(f"{where}: expected a whole number, got {value!r}")
    return int(value) if integer else value


def _share(value: Any, where: str, fail: Any) -> float:
    share = _number(value, where, fail)
    if share is None or not 0 <= share <= 1:
        raise fail(f"{where}: expected a share between 0 and 1, got {value!r}")
    return float(share)


def _columns(table: Any, props: dict[str, Any], action_of: Any, fail: Any) -> tuple[list[Column], list[Rule]]:
    """The contract's columns, with their required-ness and property-level rules."""
    columns: list[Column] = []
    rules: list[Rule] = []
    req_sev = props.get("requiredSeverity", "error")
    for prop in table.properties or []:
        if not prop.name:
            raise fail("schema.properties: every property needs a name")
        ltype = (prop.logicalType or "").lower()
        if ltype not in LOGICAL_TYPES:
            raise fail(f"{prop.name}.logicalType: {prop.logicalType!r} not one of {LOGICAL_TYPES}")
        if prop.name in RESERVED_COLUMNS:
            raise fail(f"{prop.name}: a reserved column name ({RESERVED_COLUMNS[prop.name]}); rename it upstream")
        if prop.primaryKey and prop.name in SCORES_COLUMNS:
            raise fail(
                f"{prop.name}: a natural-key column cannot be named like a column the scores table adds "
                f"({', '.join(SCORES_COLUMNS)}): the published key would be overwritten"
            )
        col = Column(prop.name, ltype, bool(prop.required), bool(prop.primaryKey), prop.description or "")
        columns.append(col)
        if prop.required:
            sev, act = action_of(req_sev, "customProperties.requiredSeverity", "required")
            rules.append(
                Rule(
                    f"{prop.name}_required", "not_null", sev, act, (prop.name,), description=f"{prop.name} is required"
                )
            )
        for q in prop.quality or []:
            rules.append(_property_rule(q, col, action_of, fail))
    if len({c.name for c in columns}) != len(columns):
        raise fail("schema.properties: duplicated column names")
    if not columns:
        raise fail("schema.properties: a contract needs at least one column")
    return columns, rules


def _check_rule_ids(rules: list[Rule], fail: Any) -> None:
    ids = [r.id for r in rules]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise fail(f"quality: duplicated rule ids {dupes}")
    reserved = RESERVED_RULE_IDS & set(ids)
    if reserved:
        raise fail(f"quality: rule ids {sorted(reserved)} are reserved")


def _parse_stage_rules(props: dict[str, Any], action_of: Any) -> dict[str, Rule]:
    """The rules that act while files are read or judge the delivery, each with the severity the contract gives it."""
    specs = (
        ("type_mismatch_rule", TYPE_MISMATCH, "typeMismatchSeverity", "error", "a value cannot be read as its type"),
        ("missing_column_rule", MISSING_COLUMN, "missingColumnSeverity", "error", "a file lacks a contract column"),
        (
            "malformed_row_rule",
            MALFORMED_ROW,
            "malformedRowSeverity",
            "error",
            "a CSV record does not split into the header's columns, or its values span several lines",
        ),
        ("empty_file_rule", EMPTY_FILE, "emptyFileSeverity", "critical", "a delivered data file holds no records"),
        (
            "incomplete_delivery_rule",
            DELIVERY_INCOMPLETE,
            "incompleteDeliverySeverity",
            "critical",
            "an expected source is missing from the delivery or holds less than its minimum share of records",
        ),
    )
    out = {}
    for field_name, rule_id, key, default, description in specs:
        sev, act = action_of(props.get(key, default), f"customProperties.{key}", rule_id)
        out[field_name] = Rule(rule_id, rule_id, sev, act, description=description)
    return out


def _expected_sources(spec: Any, fail: Any) -> ExpectedSources | None:
    """``customProperties.expectedSources``: ``{file: <regex with (?P<source>...)>, sources: [...], minShare: 0.1}``."""
    import re

    if spec is None:
        return None
    where = "customProperties.expectedSources"
    if not isinstance(spec, dict) or set(spec) - {"file", "sources", "minShare"}:
        raise fail(f"{where}: expected a mapping with file, sources and minShare")
    pattern, sources = spec.get("file"), spec.get("sources")
    if not isinstance(pattern, str):
        raise fail(f"{where}.file: a regular expression with a named group 'source'")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise fail(f"{where}.file: bad pattern: {exc}") from None
    if "source" not in compiled.groupindex:
        raise fail(f"{where}.file: the pattern needs a named group (?P<source>...)")
    if not isinstance(sources, list) or not sources or not all(isinstance(x, str) and x for x in sources):
        raise fail(f"{where}.sources: a non-empty list of source names")
    if len(set(sources)) != len(sources):
        raise fail(f"{where}.sources: listed twice")
    share = _share(spec.get("minShare", 0.0), f"{where}.minShare", fail)
    return ExpectedSources(pattern, tuple(sources), share)


def _rule_id(q: Any, fail: Any, where: str) -> str:
    if not q.id:
        raise fail(f"{where}: every quality rule needs an id")
    return q.id


def _typed_values(values: Any, col: Column, where: str, fail: Any) -> list[Any]:
    """Allowed values of an ``in_set`` rule, each of the column's type (an integer column's ``"1"`` is refused)."""
    if not isinstance(values, list) or not values:
        raise fail(f"{where}: validValues must be a non-empty list")
    out = []
    for v in values:
        if col.logical_type in ("integer", "number"):
            out.append(_number(v, where + ".validValues", fail, integer=col.logical_type == "integer"))
        elif col.logical_type == "boolean":
            if not isinstance(v, bool):
                raise fail(f"{where}.validValues: expected true or false, got {v!r}")
            out.append(v)
        elif col.logical_type == "string":
            if not isinstance(v, str):
                raise fail(f"{where}.validValues: expected strings, got {v!r} (quote it in the YAML)")
            out.append(v)
        else:
            raise fail(f"{where}: validValues is not supported on a {col.logical_type} column")
    return out


def _property_rule(q: Any, col: Column, action_of: Any, fail: Any) -> Rule:
    column, ltype = col.name, col.logical_type
    rid = _rule_id(q, fail, f"{column}.quality")
    where = f"{column}.quality.{rid}"
    sev, act = action_of(q.severity, where)
    metric = q.metric or q.rule
    args = q.arguments or {}
    if not isinstance(args, dict):
        raise fail(f"{where}: arguments must be a mapping")
    if q.mustBe not in (None, 0):
        raise fail(f"{where}: only mustBe: 0 is supported for row rules")
    if metric == "nullValues":
        return Rule(rid, "not_null", sev, act, (column,), description=q.description or "")
    if metric != "invalidValues":
        raise fail(f"{where}: unsupported metric {metric!r}")
    if "validValues" in args:
        values = _typed_values(args["validValues"], col, where, fail)
        return Rule(rid, "in_set", sev, act, (column,), {"values": values}, q.description or "")
    if "pattern" in args:
        import re

        if not isinstance(args["pattern"], str):
            raise fail(f"{where}: pattern must be a string")
        if ltype != "string":
            raise fail(f"{where}: a pattern needs a string column ({column} is {ltype})")
        try:
            re.compile(args["pattern"])
        except re.error as exc:
            raise fail(f"{where}: bad pattern: {exc}") from None
        return Rule(rid, "pattern", sev, act, (column,), {"pattern": args["pattern"]}, q.description or "")
    if "minimum" in args or "maximum" in args:
        if ltype not in ("integer", "number"):
            raise fail(f"{where}: a range needs a numeric column")
        lo = _number(args.get("minimum"), f"{where}.minimum", fail)
        hi = _number(args.get("maximum"), f"{where}.maximum", fail)
        if lo is None and hi is None:
            raise fail(f"{where}: a range needs a minimum or a maximum")
        if lo is not None and hi is not None and lo > hi:
            raise fail(f"{where}: minimum is above maximum")
        return Rule(rid, "range", sev, act, (column,), {"min": lo, "max": hi}, q.description or "")
    raise fail(f"{where}: invalidValues needs validValues, pattern or minimum/maximum")


def _table_rule(q: Any, columns: dict[str, Column], action_of: Any, fail: Any) -> Rule:
    rid = _rule_id(q, fail, "schema.quality")
    where = f"schema.quality.{rid}"
    metric = q.metric or q.rule
    sev, act = action_of(q.severity, where, "row_count" if metric == "rowCount" else None)
    args = q.arguments or {}
    if not isinstance(args, dict):
        raise fail(f"{where}: arguments must be a mapping")
    if metric == "rowCount":
        bounds = q.mustBeBetween or [q.mustBeGreaterOrEqualTo, q.mustBeLessOrEqualTo]
        if len(bounds) != 2:
            raise fail(f"{where}: mustBeBetween takes [minimum, maximum]")
        lo, hi = (_number(b, f"{where}.bounds", fail, integer=True) for b in bounds)
        if lo is None and hi is None:
            raise fail(f"{where}: rowCount needs mustBeBetween or bounds")
        if lo is not None and hi is not None and lo > hi:
            raise fail(f"{where}: minimum is above maximum")
        return Rule(rid, "row_count", sev, act, (), {"min": lo, "max": hi}, q.description or "")
    if metric == "duplicateValues":
        cols = args.get("properties") or []
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise fail(f"{where}: arguments.properties must be a list of column names")
        unknown = [c for c in cols if c not in columns]
        if not cols or unknown:
            raise fail(f"{where}: arguments.properties must list contract columns (unknown: {unknown})")
        if q.mustBe not in (None, 0):
            raise fail(f"{where}: only mustBe: 0 is supported")
        return Rule(rid, "unique", sev, act, tuple(cols), description=q.description or "")
    if q.type == "custom" and q.engine == "pipelines" and q.implementation == "partitionDateMatches":
        columns_named, params = _partition_date_arguments(args, columns, where, fail)
        return Rule(rid, "partition_date", sev, act, columns_named, params, q.description or "")
    raise fail(f"{where}: unsupported rule (metric {metric!r}, type {q.type!r})")


#: Argument names of the two forms of ``partitionDateMatches``.
DATE_PARTS = ("year", "month", "day")
DATE_COLUMN_ARGUMENTS = ("column", "timezone")
#: Zone names that exist in the time zone database but mean the host's zone, which a contract cannot depend on.
HOST_ZONES = frozenset({"localtime", "posixrules"})


def _partition_date_arguments(
    args: dict[str, Any], columns: dict[str, Column], where: str, fail: Any
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The columns and params of a ``partitionDateMatches`` rule, in exactly one of its two forms.

    ``{year, month, day}`` names three integer columns (params: the three
    names). ``{column}`` names a ``date`` column, ``{column, timezone}`` a
    ``timestamp`` column (params: ``column``, ``logical_type`` and, for a
    timestamp, ``timezone``, default ``UTC``).
    """
    unknown = sorted(str(k) for k in args if k not in DATE_PARTS + DATE_COLUMN_ARGUMENTS)
    if unknown:
        raise fail(f"{where}: unknown arguments {unknown} (expected column and timezone, or year, month and day)")
    single = [k for k in DATE_COLUMN_ARGUMENTS if k in args]
    parted = [k for k in DATE_PARTS if k in args]
    if single and parted:
        raise fail(
            f"{where}: arguments name either one date or timestamp column (column, timezone) or "
            f"the year, month and day columns, not both (got {', '.join(single + parted)})"
        )
    if not single and not parted:
        raise fail(
            f"{where}: arguments must name a date or timestamp column (column) or the year, month and day columns"
        )
    if parted:
        parts = {k: args.get(k) for k in DATE_PARTS}
        if any(not isinstance(v, str) or v not in columns for v in parts.values()):
            raise fail(f"{where}: arguments must name the year, month and day columns")
        if any(columns[v].logical_type != "integer" for v in parts.values()):
            raise fail(f"{where}: the year, month and day columns must be integer columns")
        return tuple(parts.values()), parts
    name = args.get("column")
    if not isinstance(name, str) or name not in columns:
        raise fail(f"{where}.column: {name!r} is not a contract column")
    ltype = columns[name].logical_type
    if ltype not in ("date", "timestamp"):
        raise fail(f"{where}.column: {name} has logicalType {ltype}; partitionDateMatches needs a date or timestamp")
    if ltype == "date":
        if "timezone" in args:
            raise fail(f"{where}.timezone: a date has no time zone ({name} is a date column)")
        return (name,), {"column": name, "logical_type": ltype}
    zone = args.get("timezone", "UTC")
    _check_time_zone(zone, f"{where}.timezone", fail)
    return (name,), {"column": name, "logical_type": ltype, "timezone": zone}


def _check_time_zone(zone: Any, where: str, fail: Any) -> None:
    """Refuse a time zone that is not an IANA name this machine's time zone database knows."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    example = "an IANA name such as America/New_York or UTC"
    if not isinstance(zone, str) or not zone or zone in HOST_ZONES:
        raise fail(f"{where}: expected {example}, got {str(zone)[:40]!r}")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise fail(f"{where}: unknown time zone {zone[:40]!r} (expected {example})") from None


def _with_time_zones(columns: list[Column], rules: list[Rule], fail: Any) -> list[Column]:
    """The columns, a timestamp column with its partition-date rule's time zone (values without an offset are in it)."""
    import dataclasses

    zones: dict[str, tuple[str, str]] = {}
    for rule in rules:
        zone = rule.params.get("timezone") if rule.kind == "partition_date" else None
        if zone is None:
            continue
        name = rule.params["column"]
        if name in zones and zones[name][1] != zone:
            first, other = zones[name]
            raise fail(
                f"schema.quality.{rule.id}: {name} is read in {other} by rule {first}; "
                f"one column has one time zone (got {zone})"
            )
        zones[name] = (rule.id, zone)
    return [dataclasses.replace(c, timezone=zones[c.name][1]) if c.name in zones else c for c in columns]


def contract_for(source: Any, settings: Any = None) -> Contract:
    """The compiled contract of a dataset, or of a model project's dataset."""
    from pipelines.core.config import dataset_of
    from pipelines.core.settings import get_settings

    settings = settings or get_settings()
    return load_contract(settings.contracts_dir / dataset_of(source).contract)
