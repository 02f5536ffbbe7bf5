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
| ``implementation: partitionDateMatches`` | | (one per date part) |

Parse-stage rules, applied while reading files: ``type_mismatch`` (a value
that cannot be read as its column's type), ``missing_column`` (a file lacks a
contract column) and ``malformed_row``, plus the table rules
``quarantine_rate`` and ``unsafe_file_name``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.core.errors import ConfigError

ACTIONS = ("halt", "quarantine", "warn")
LOGICAL_TYPES = ("integer", "number", "string", "timestamp", "date", "boolean")

TYPE_MISMATCH = "type_mismatch"
MISSING_COLUMN = "missing_column"
MALFORMED_ROW = "malformed_row"
UNSAFE_FILE_NAME = "unsafe_file_name"
QUARANTINE_RATE = "quarantine_rate"
FILE_UNREADABLE = "file_unreadable"


@dataclass(frozen=True)
class Column:
    """A contract column."""

    name: str
    logical_type: str
    required: bool = False
    primary_key: bool = False
    description: str = ""


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
        return self.kind not in ("row_count", QUARANTINE_RATE, MALFORMED_ROW, UNSAFE_FILE_NAME)


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
            description="a landed file's name is unsafe as a storage key; its rows cannot be accounted for",
        )
        return (self.type_mismatch_rule, self.missing_column_rule, self.malformed_row_rule, *self.rules, rate, unsafe)


def _custom_properties(items: list[Any] | None) -> dict[str, Any]:
    return {item.property: item.value for item in items or [] if item.property}


def load_contract(path: str | Path) -> Contract:
    """Read an ODCS v3 contract and compile its rules.

    Raises:
        ConfigError: unreadable file, or a rule this compiler does not support
            (named with the rule and the problem).
    """
    path = Path(path)
    odcs = _read_odcs(path)

    def fail(msg: str) -> ConfigError:
        return ConfigError(f"{path}: {msg}")

    props = _custom_properties(odcs.customProperties)
    actions, action_of = _severity_actions(props, fail)
    max_rate = _max_quarantine_rate(props, fail)
    table = odcs.schema_[0]
    columns, rules = _columns(table, props, action_of, fail)
    names = {c.name for c in columns}
    rules += [_table_rule(q, names, action_of, fail) for q in table.quality or []]
    _check_rule_ids(rules, fail)
    return Contract(
        id=odcs.id or table.name or path.stem,
        name=table.name or path.stem,
        version=str(odcs.version),
        columns=tuple(columns),
        rules=tuple(rules),
        max_quarantine_rate=max_rate,
        severity_actions=dict(actions),
        source=str(path),
        **_parse_stage_rules(props, action_of),
    )


def _read_odcs(path: Path) -> Any:
    """The ODCS document, with the header this compiler needs (v3, a version, one schema object)."""
    import yaml
    from open_data_contract_standard.model import OpenDataContractStandard
    from pydantic import ValidationError

    if not path.is_file():
        raise ConfigError(f"{path}: data contract not found")
    try:
        odcs = OpenDataContractStandard.from_file(str(path))
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        raise ConfigError(f"{path}: not a valid ODCS v3 contract: {str(exc).splitlines()[0]}") from None
    if not odcs.apiVersion or not odcs.apiVersion.startswith("v3"):
        raise ConfigError(f"{path}: apiVersion: expected v3.x (got {odcs.apiVersion!r})")
    if not odcs.version:
        raise ConfigError(f"{path}: version: a contract version is required")
    if not odcs.schema_ or len(odcs.schema_) != 1:
        raise ConfigError(f"{path}: schema: exactly one schema object (the dataset's table) is supported")
    return odcs


def _severity_actions(props: dict[str, Any], fail: Any) -> tuple[dict[str, str], Any]:
    """The contract's ``severityActions``, and ``action_of(severity, where) -> (severity, action)`` under them."""
    actions = props.get("severityActions") or {"critical": "halt", "error": "quarantine", "warning": "warn"}
    if not isinstance(actions, dict) or any(a not in ACTIONS for a in actions.values()):
        raise fail(f"customProperties.severityActions: actions must be one of {ACTIONS}")

    def action_of(severity: str | None, where: str) -> tuple[str, str]:
        if not severity:
            raise fail(f"{where}: severity is required")
        if severity not in actions:
            raise fail(f"{where}: severity {severity!r} has no action (known: {sorted(actions)})")
        return severity, actions[severity]

    return actions, action_of


def _max_quarantine_rate(props: dict[str, Any], fail: Any) -> float:
    try:
        max_rate = float(props.get("maxQuarantineRate", 0.05))
    except (TypeError, ValueError):
        raise fail("customProperties.maxQuarantineRate: expected a number") from None
    if not 0 <= max_rate <= 1:
        raise fail("customProperties.maxQuarantineRate: expected a share between 0 and 1")
    return max_rate


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
        columns.append(Column(prop.name, ltype, bool(prop.required), bool(prop.primaryKey), prop.description or ""))
        if prop.required:
            sev, act = action_of(req_sev, "customProperties.requiredSeverity")
            rules.append(
                Rule(
                    f"{prop.name}_required", "not_null", sev, act, (prop.name,), description=f"{prop.name} is required"
                )
            )
        for q in prop.quality or []:
            rules.append(_property_rule(q, prop.name, ltype, action_of, fail))
    if len({c.name for c in columns}) != len(columns):
        raise fail("schema.properties: duplicated column names")
    return columns, rules


def _check_rule_ids(rules: list[Rule], fail: Any) -> None:
    ids = [r.id for r in rules]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise fail(f"quality: duplicated rule ids {dupes}")
    reserved = {TYPE_MISMATCH, MISSING_COLUMN, MALFORMED_ROW, UNSAFE_FILE_NAME, QUARANTINE_RATE, FILE_UNREADABLE} & set(
        ids
    )
    if reserved:
        raise fail(f"quality: rule ids {sorted(reserved)} are reserved")


def _parse_stage_rules(props: dict[str, Any], action_of: Any) -> dict[str, Rule]:
    """The rules that act while files are read, each with the severity the contract gives it."""
    specs = (
        (
            "type_mismatch_rule",
            TYPE_MISMATCH,
            "typeMismatchSeverity",
            "a value cannot be read as its column's contract type",
        ),
        ("missing_column_rule", MISSING_COLUMN, "missingColumnSeverity", "the delivered file lacks a contract column"),
        (
            "malformed_row_rule",
            MALFORMED_ROW,
            "malformedRowSeverity",
            "a CSV row does not split into the header's columns",
        ),
    )
    out = {}
    for field_name, rule_id, key, description in specs:
        sev, act = action_of(props.get(key, "error"), f"customProperties.{key}")
        out[field_name] = Rule(rule_id, rule_id, sev, act, description=description)
    return out


def _rule_id(q: Any, fail: Any, where: str) -> str:
    if not q.id:
        raise fail(f"{where}: every quality rule needs an id")
    return q.id


def _property_rule(q: Any, column: str, ltype: str, action_of: Any, fail: Any) -> Rule:
    rid = _rule_id(q, fail, f"{column}.quality")
    sev, act = action_of(q.severity, f"{column}.quality.{rid}")
    metric = q.metric or q.rule
    args = q.arguments or {}
    if q.mustBe not in (None, 0):
        raise fail(f"{column}.quality.{rid}: only mustBe: 0 is supported for row rules")
    if metric == "nullValues":
        return Rule(rid, "not_null", sev, act, (column,), description=q.description or "")
    if metric != "invalidValues":
        raise fail(f"{column}.quality.{rid}: unsupported metric {metric!r}")
    if "validValues" in args:
        values = list(args["validValues"])
        if not values:
            raise fail(f"{column}.quality.{rid}: validValues is empty")
        return Rule(rid, "in_set", sev, act, (column,), {"values": values}, q.description or "")
    if "pattern" in args:
        import re

        try:
            re.compile(args["pattern"])
        except re.error as exc:
            raise fail(f"{column}.quality.{rid}: bad pattern: {exc}") from None
        return Rule(rid, "pattern", sev, act, (column,), {"pattern": args["pattern"]}, q.description or "")
    if "minimum" in args or "maximum" in args:
        if ltype not in ("integer", "number"):
            raise fail(f"{column}.quality.{rid}: a range needs a numeric column")
        lo, hi = args.get("minimum"), args.get("maximum")
        if lo is not None and hi is not None and lo > hi:
            raise fail(f"{column}.quality.{rid}: minimum is above maximum")
        return Rule(rid, "range", sev, act, (column,), {"min": lo, "max": hi}, q.description or "")
    raise fail(f"{column}.quality.{rid}: invalidValues needs validValues, pattern or minimum/maximum")


def _table_rule(q: Any, names: set[str], action_of: Any, fail: Any) -> Rule:
    rid = _rule_id(q, fail, "schema.quality")
    where = f"schema.quality.{rid}"
    sev, act = action_of(q.severity, where)
    args = q.arguments or {}
    metric = q.metric or q.rule
    if metric == "rowCount":
        lo, hi = q.mustBeBetween or [q.mustBeGreaterOrEqualTo, q.mustBeLessOrEqualTo]
        if lo is None and hi is None:
            raise fail(f"{where}: rowCount needs mustBeBetween or bounds")
        return Rule(rid, "row_count", sev, act, (), {"min": lo, "max": hi}, q.description or "")
    if metric == "duplicateValues":
        cols = list(args.get("properties") or [])
        unknown = [c for c in cols if c not in names]
        if not cols or unknown:
            raise fail(f"{where}: arguments.properties must list contract columns (unknown: {unknown})")
        if q.mustBe not in (None, 0):
            raise fail(f"{where}: only mustBe: 0 is supported")
        return Rule(rid, "unique", sev, act, tuple(cols), description=q.description or "")
    if q.type == "custom" and q.engine == "pipelines" and q.implementation == "partitionDateMatches":
        parts = {k: args.get(k) for k in ("year", "month", "day")}
        if any(v not in names for v in parts.values()):
            raise fail(f"{where}: arguments must name the year, month and day columns")
        return Rule(rid, "partition_date", sev, act, tuple(parts.values()), parts, q.description or "")
    raise fail(f"{where}: unsupported rule (metric {metric!r}, type {q.type!r})")


def contract_for(project: Any, settings: Any = None) -> Contract:
    """The compiled contract of a model project."""
    from pipelines.core.settings import get_settings

    settings = settings or get_settings()
    return load_contract(settings.contracts_dir / project.dataset.contract)
