"""The contract's rules compiled two ways: a Great Expectations suite (the record) and row masks (the decision).

- :func:`build_expectations`: a Great Expectations 1.x suite, the validation
  record that goes into the report;
- :func:`compute_masks`: vectorised pandas row masks that decide, row by row,
  what is quarantined (GX's ``COMPLETE`` result format is an order of
  magnitude slower than the suite itself).

The validation step reconciles both: for every rule GX's unexpected count must
equal the mask's count, and the report shows both.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import TYPE_CHECKING, Any

from pipelines.core.contracts import Contract, Rule
from pipelines.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


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
        elif rule.kind == "unique" and len(rule.columns) == 1:  # the compound expectation needs two or more
            out.append(gxe.ExpectColumnValuesToBeUnique(column=col, meta=meta))
        elif rule.kind == "unique":
            out.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(rule.columns), meta=meta))
        elif rule.kind == "row_count":
            out.append(
                gxe.ExpectTableRowCountToBeBetween(
                    min_value=rule.params["min"], max_value=rule.params["max"], meta=meta
                )
            )
        elif rule.kind == "partition_date" and "column" in rule.params:
            start, end = partition_bounds(rule, ds)
            out.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col, min_value=start, max_value=end, strict_max=True, meta=meta
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


def partition_bounds(rule: Rule, ds: str) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` of the partition day for a one-column ``partition_date`` rule, as the typed frame holds it.

    A ``date`` column is held as naive midnights: ``[day, day + 1)``. A
    ``timestamp`` column is held as UTC instants: local midnight of the day
    and of the next day in the rule's time zone, each converted to UTC (a DST
    day is 23 or 25 hours long; where clocks skip midnight, the instant of
    the skipped midnight is that of the day's first local time). The GX
    expectation and the row mask compare with the same two values.
    """
    from zoneinfo import ZoneInfo

    day = dt.date.fromisoformat(ds)
    start, end = dt.datetime.combine(day, dt.time()), dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    if rule.params["logical_type"] == "date":
        return start, end
    zone = ZoneInfo(rule.params["timezone"])
    return (
        start.replace(tzinfo=zone).astimezone(dt.UTC),
        end.replace(tzinfo=zone).astimezone(dt.UTC),
    )


def compute_masks(contract: Contract, frame: pd.DataFrame, ds: str, *, unique: bool = True) -> dict[str, np.ndarray]:
    """Row masks (True = row breaks the rule) for every row-level rule.

    Null handling follows Great Expectations: value rules ignore nulls (a
    null is the ``not_null`` rule's business); ``unique`` flags every row of a
    duplicated key, as ``ExpectCompoundColumnsToBeUnique`` does. With
    ``unique=False`` the ``unique`` rules are left out: a frame that is one
    batch of a day cannot tell (the day's duplicates are found over every
    batch, :class:`~pipelines.ingest.spill.Duplicates`).
    """
    import numpy as np

    day = dt.date.fromisoformat(ds)
    masks: dict[str, np.ndarray] = {}
    for rule in contract.rules:
        if not rule.row_level or (rule.kind == "unique" and not unique):
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
        elif rule.kind == "partition_date" and "column" in rule.params:
            start, end = partition_bounds(rule, ds)
            values = frame[rule.columns[0]]
            mask = (values.notna() & ~((values >= start) & (values < end))).to_numpy(dtype=bool)
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
    if rule.kind == "partition_date" and rule.params.get("logical_type") == "timestamp":
        return f"{col} is not on the partition day in {rule.params['timezone']}"
    if rule.kind == "partition_date" and "column" in rule.params:
        return f"{col} is not the partition day"
    if rule.kind == "partition_date":
        return "row date differs from the partition key"
    return rule.description or rule.kind


class Expectations:
    """The contract's GX suite, built once, run on one frame or on the batches of a day, its counts merged.

    Run once (a day read in one batch), :meth:`merged` returns GX's own
    result. Run on several batches, each batch is validated on its own and
    the counts are added per expectation: exact for every row rule; a
    key-uniqueness expectation sees only the duplicates within each batch
    (marked ``scope: batch``; the decision counts the day's duplicates
    itself), and the row-count expectation is judged on the summed count.
    """

    def __init__(self, contract: Contract, ds: str):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        # GX logs every registered helper at INFO; task logs are for people.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GX sets this module's logger to INFO itself on import; quiet it after.
        logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
        self.contract, self.ds = contract, ds
        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = ctx.data_sources.add_pandas(name="landed")
        asset = source.add_dataframe_asset(name=contract.name)
        self.batch_def = asset.add_batch_definition_whole_dataframe(name=f"ds={ds}")  # not a storage key: a GX batch
        # Built whole, then added: adding expectations one by one to a stored suite re-saves it each time.
        # Every rule keeps its own expectation (two rules that compile alike are both evaluated).
        expectations = build_expectations(contract, ds)
        suite = gx.ExpectationSuite(name=f"{contract.id}@{contract.version}", expectations=expectations)
        self.suite = ctx.suites.add(suite)
        # The context stores a copy and drops an expectation it cannot read back (it only logs that).
        lost = _rule_ids(expectations) - _rule_ids(self.suite.expectations)
        if len(self.suite.expectations) != len(expectations) or lost:
            raise ConfigError(f"contract {contract.id}: Great Expectations did not keep the rules {sorted(lost)}")

    def run(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Validate one frame: GX's result as JSON (BASIC: the unexpected counts the reconciliation needs,
        about 1.5x faster than the default SUMMARY at 1M rows)."""
        batch = self.batch_def.get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(self.suite, result_format="BASIC").to_json_dict()

    def merged(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The day's record from its batches' results (see :func:`merge_gx`)."""
        return merge_gx(self.contract, results)


def _rule_ids(expectations: list[Any]) -> set[str]:
    return {str((e.meta or {}).get("rule_id")) for e in expectations}


def merge_gx(contract: Contract, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The day's record from its batches' results: ``{"success", "statistics", "by_rule", "raw"}`` (no GX needed)."""
    raw = results[0] if len(results) == 1 else _merge_results(contract, results)
    return {
        "success": bool(raw["success"]),
        "statistics": dict(raw["statistics"]),
        "by_rule": _by_rule(raw, batched=len(results) > 1),
        "raw": raw,
    }


def _merge_results(contract: Contract, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several batches' GX results as one: counts added per expectation, the row count judged on the sum."""
    first = results[0]
    merged = []
    for i, r0 in enumerate(first["results"]):
        parts = [r["results"][i] for r in results]
        res: dict[str, Any] = {}
        for key in ("element_count", "unexpected_count", "missing_count"):
            if key in (r0.get("result") or {}):
                res[key] = sum(int((p.get("result") or {}).get(key) or 0) for p in parts)
        if "unexpected_count" in res and "element_count" in res:
            nonmissing = res["element_count"] - res.get("missing_count", 0)
            res["unexpected_percent"] = 100.0 * res["unexpected_count"] / nonmissing if nonmissing else None
        cfg = r0["expectation_config"]
        success = all(bool(p["success"]) for p in parts)
        if "observed_value" in (r0.get("result") or {}):
            if cfg.get("type") == "expect_table_row_count_to_be_between":
                total = sum(int((p.get("result") or {}).get("observed_value") or 0) for p in parts)
                res["observed_value"] = total
                lo, hi = cfg["kwargs"].get("min_value"), cfg["kwargs"].get("max_value")
                success = (lo is None or total >= lo) and (hi is None or total <= hi)
            else:
                res["observed_value"] = parts[-1]["result"]["observed_value"]
        samples = [v for p in parts for v in (p.get("result") or {}).get("partial_unexpected_list") or []]
        if "partial_unexpected_list" in (r0.get("result") or {}):
            res["partial_unexpected_list"] = samples[:20]
        exception = next(
            (p["exception_info"] for p in parts if (p.get("exception_info") or {}).get("raised_exception")), None
        )
        merged.append(
            {
                "expectation_config": cfg,
                "success": success,
                "result": res,
                "exception_info": exception or r0.get("exception_info"),
                "meta": r0.get("meta", {}),
            }
        )
    evaluated = len(merged)
    successful = sum(1 for m in merged if m["success"])
    return {
        "success": successful == evaluated,
        "batches": len(results),
        "statistics": {
            "evaluated_expectations": evaluated,
            "successful_expectations": successful,
            "unsuccessful_expectations": evaluated - successful,
            "success_percent": 100.0 * successful / evaluated if evaluated else None,
        },
        "results": merged,
        "suite_name": first.get("suite_name"),
        "meta": first.get("meta", {}),
    }


def _by_rule(raw: dict[str, Any], *, batched: bool) -> dict[str, dict[str, Any]]:
    """GX's results grouped by contract rule (a rule may be several expectations, one per part)."""
    by_rule: dict[str, dict[str, Any]] = {}
    for r in raw["results"]:
        cfg = r["expectation_config"]
        meta = cfg.get("meta") or {}
        rid = meta.get("rule_id")
        res = r.get("result") or {}
        entry = by_rule.setdefault(
            rid, {"success": True, "unexpected_count": 0, "parts": 0, "max_part": 0, "observed_value": None}
        )
        entry["success"] = entry["success"] and bool(r["success"])
        cnt = int(res.get("unexpected_count") or 0)
        entry["unexpected_count"] += cnt
        entry["max_part"] = max(entry["max_part"], cnt)
        entry["parts"] += 1
        if "observed_value" in res:
            entry["observed_value"] = res["observed_value"]
        info = r.get("exception_info") or {}
        if info.get("raised_exception"):
            entry["exception"] = info.get("exception_message")
        if batched and cfg.get("type") in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
            entry["scope"] = "batch"
    return by_rule


def run_expectations(contract: Contract, frame: pd.DataFrame, ds: str) -> dict[str, Any]:
    """Run the contract's GX suite on one typed frame.

    Returns:
        ``{"success", "statistics", "by_rule": {rule_id: {...}}, "raw": <GX result JSON>}``.
    """
    suite = Expectations(contract, ds)
    return suite.merged([suite.run(frame)])
