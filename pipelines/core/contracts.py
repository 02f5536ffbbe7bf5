"""Data contracts: ODCS v3 YAML compiled to rules, GX expectations and row masks.

A contract is read with the ``open-data-contract-standard`` package and turned
into a flat list of :class:`Rule`. Each rule has an id, a severity and the
action that severity maps to (``halt``, ``quarantine`` or ``warn``). The same
rules compile two ways:

- :func:`build_expectations`: a Great Expectations 1.x suite, the validation
  record that goes into the report;
- :func:`compute_masks`: vectorised pandas row masks that decide, row by row,
  what is quarantined (GX's ``COMPLETE`` result format is an order of
  magnitude slower than the suite itself).

The validation step reconciles both: for every rule GX's unexpected count must
equal the mask's count, and the report shows both.

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
that cannot be read as its column's type) and ``missing_column`` (a file
lacks a contract column), plus the table rule ``quarantine_rate``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

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
    import yaml
    from open_data_contract_standard.model import OpenDataContractStandard
    from pydantic import ValidationError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: data contract not found")
    try:
        odcs = OpenDataContractStandard.from_file(str(path))
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        raise ConfigError(f"{path}: not a valid ODCS v3 contract: {str(exc).splitlines()[0]}") from None

    def fail(msg: str) -> ConfigError:
        return ConfigError(f"{path}: {msg}")

    if not odcs.apiVersion or not odcs.apiVersion.startswith("v3"):
        raise fail(f"apiVersion: expected v3.x (got {odcs.apiVersion!r})")
    if not odcs.version:
        raise fail("version: a contract version is required")
    if not odcs.schema_ or len(odcs.schema_) != 1:
        raise fail("schema: exactly one schema object (the dataset's table) is supported")
    props = _custom_properties(odcs.customProperties)
    actions = props.get("severityActions") or {"critical": "halt", "error": "quarantine", "warning": "warn"}
    if not isinstance(actions, dict) or any(a not in ACTIONS for a in actions.values()):
        raise fail(f"customProperties.severityActions: actions must be one of {ACTIONS}")
    try:
        max_rate = float(props.get("maxQuarantineRate", 0.05))
    except (TypeError, ValueError):
        raise fail("customProperties.maxQuarantineRate: expected a number") from None
    if not 0 <= max_rate <= 1:
        raise fail("customProperties.maxQuarantineRate: expected a share between 0 and 1")

    def action_of(severity: str | None, where: str) -> tuple[str, str]:
        if not severity:
            raise fail(f"{where}: severity is required")
        if severity not in actions:
            raise fail(f"{where}: severity {severity!r} has no action (known: {sorted(actions)})")
        return severity, actions[severity]

    table = odcs.schema_[0]
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
    names = {c.name for c in columns}
    if len(names) != len(columns):
        raise fail("schema.properties: duplicated column names")
    for q in table.quality or []:
        rules.append(_table_rule(q, names, action_of, fail))
    ids = [r.id for r in rules]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise fail(f"quality: duplicated rule ids {dupes}")
    reserved = {TYPE_MISMATCH, MISSING_COLUMN, MALFORMED_ROW, UNSAFE_FILE_NAME, QUARANTINE_RATE, FILE_UNREADABLE} & set(
        ids
    )
    if reserved:
        raise fail(f"quality: rule ids {sorted(reserved)} are reserved")
    sev, act = action_of(props.get("typeMismatchSeverity", "error"), "customProperties.typeMismatchSeverity")
    type_rule = Rule(
        TYPE_MISMATCH, TYPE_MISMATCH, sev, act, description="a value cannot be read as its column's contract type"
    )
    sev, act = action_of(props.get("missingColumnSeverity", "error"), "customProperties.missingColumnSeverity")
    missing_rule = Rule(
        MISSING_COLUMN, MISSING_COLUMN, sev, act, description="the delivered file lacks a contract column"
    )
    sev, act = action_of(props.get("malformedRowSeverity", "error"), "customProperties.malformedRowSeverity")
    malformed_rule = Rule(
        MALFORMED_ROW, MALFORMED_ROW, sev, act, description="a CSV row does not split into the header's columns"
    )
    return Contract(
        id=odcs.id or table.name or path.stem,
        name=table.name or path.stem,
        version=str(odcs.version),
        columns=tuple(columns),
        rules=tuple(rules),
        max_quarantine_rate=max_rate,
        severity_actions=dict(actions),
        source=str(path),
        type_mismatch_rule=type_rule,
        missing_column_rule=missing_rule,
        malformed_row_rule=malformed_rule,
    )


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


# ---------------------------------------------------------------- compilation


def build_expectations(contract: Contract, ds: str) -> list[Any]:
    """The contract's rules as Great Expectations 1.x expectations.

    Each expectation carries ``meta.rule_id`` so results map back to rules.
    Parse-stage rules are not expectations (they act while reading files).
    """
    import great_expectations.expectations as gxe

    day = dt.date.fromisoformat(ds)
    out: list[Any] = []
    for rule in contract.rules:
        meta = {"rule_id": rule.id, "severity": rule.severity, "action": rule.action}
        col = rule.columns[0] if rule.columns else None
        if rule.kind == "not_null":
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=col, meta=meta))
        elif rule.kind == "range":
            out.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col, min_value=rule.params["min"], max_value=rule.params["max"], meta=meta
                )
            )
        elif rule.kind == "in_set":
            out.append(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=rule.params["values"], meta=meta))
        elif rule.kind == "pattern":
            out.append(gxe.ExpectColumnValuesToMatchRegex(column=col, regex=rule.params["pattern"], meta=meta))
        elif rule.kind == "unique":
            out.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(rule.columns), meta=meta))
        elif rule.kind == "row_count":
            out.append(
                gxe.ExpectTableRowCountToBeBetween(
                    min_value=rule.params["min"], max_value=rule.params["max"], meta=meta
                )
            )
        elif rule.kind == "partition_date":
            for part, value in (("year", day.year), ("month", day.month), ("day", day.day)):
                out.append(
                    gxe.ExpectColumnValuesToBeInSet(
                        column=rule.params[part], value_set=[value], meta={**meta, "part": part}
                    )
                )
        else:  # pragma: no cover - load_contract rejects unknown kinds
            raise ConfigError(f"rule {rule.id}: no expectation for kind {rule.kind}")
    return out


def compute_masks(contract: Contract, frame: pd.DataFrame, ds: str) -> dict[str, np.ndarray]:
    """Row masks (True = row breaks the rule) for every row-level rule.

    Null handling follows Great Expectations: value rules ignore nulls (a
    null is the ``not_null`` rule's business); ``unique`` flags every row of a
    duplicated key, as ``ExpectCompoundColumnsToBeUnique`` does.
    """
    import numpy as np

    day = dt.date.fromisoformat(ds)
    masks: dict[str, np.ndarray] = {}
    for rule in contract.rules:
        if not rule.row_level:
            continue
        if rule.kind == "not_null":
            mask = frame[rule.columns[0]].isna().to_numpy()
        elif rule.kind == "range":
            values = frame[rule.columns[0]]
            mask = np.zeros(len(frame), dtype=bool)
            if rule.params["min"] is not None:
                mask |= (values < rule.params["min"]).to_numpy(dtype=bool, na_value=False)
            if rule.params["max"] is not None:
                mask |= (values > rule.params["max"]).to_numpy(dtype=bool, na_value=False)
        elif rule.kind == "in_set":
            values = frame[rule.columns[0]]
            mask = (values.notna() & ~values.isin(rule.params["values"])).to_numpy(dtype=bool)
        elif rule.kind == "pattern":
            values = frame[rule.columns[0]]
            # A search, like GX's pandas ExpectColumnValuesToMatchRegex (anchor the pattern to match whole values).
            matched = values.astype("string").str.contains(rule.params["pattern"], regex=True).fillna(True)
            mask = (~matched.astype(bool)).to_numpy(dtype=bool)
        elif rule.kind == "unique":
            sub = frame[list(rule.columns)]
            mask = (sub.notna().any(axis=1) & sub.duplicated(keep=False)).to_numpy(dtype=bool)
        elif rule.kind == "partition_date":
            mask = np.zeros(len(frame), dtype=bool)
            for part, value in (("year", day.year), ("month", day.month), ("day", day.day)):
                values = frame[rule.params[part]]
                mask |= (values.notna() & (values != value)).to_numpy(dtype=bool)
        else:  # pragma: no cover
            raise ConfigError(f"rule {rule.id}: no mask for kind {rule.kind}")
        masks[rule.id] = np.asarray(mask, dtype=bool)
    return masks


def describe_failure(rule: Rule) -> str:
    """Short human reason for a row that breaks ``rule``."""
    col = ", ".join(rule.columns)
    if rule.kind == "not_null":
        return f"{col} is null but required"
    if rule.kind == "range":
        return f"{col} outside [{rule.params['min']}, {rule.params['max']}]"
    if rule.kind == "in_set":
        return f"{col} not an allowed value"
    if rule.kind == "pattern":
        return f"{col} does not match {rule.params['pattern']}"
    if rule.kind == "unique":
        return f"duplicated key ({col})"
    if rule.kind == "partition_date":
        return "row date differs from the partition key"
    return rule.description or rule.kind
