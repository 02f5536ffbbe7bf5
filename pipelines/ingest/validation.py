"""The validation step: landed partition -> validated/ + quarantine/ + report.

``validate_partition`` reads everything landed for a partition, coerces it to
the contract's types, runs the contract's Great Expectations suite (the
record), computes row masks (the decision), and then either

- **publishes**: validated rows as typed Parquet, quarantined rows with their
  original values, rule ids and reasons, unreadable files as files, and the
  report; ``landed_rows == validated_rows + quarantined_rows``; or
- **halts**: a halt rule fired (or the quarantine rate was exceeded); the
  report says why, nothing is left in ``validated/`` or ``quarantine/`` for
  the partition, and :class:`~pipelines.core.errors.ContractHalt` is raised.

Re-running replaces the partition's outputs. Layout:

    validated/<dataset>/ds=D/part-00000.parquet
    quarantine/<dataset>/ds=D/rows.parquet      (all columns as delivered text)
    quarantine/<dataset>/ds=D/files/<name>      (unreadable files, byte copies)
    quarantine/<dataset>/ds=D/_files.json
    reports/<dataset>/ds=D/validation.json | validation.html
"""

from __future__ import annotations

import html
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.contracts import (
    FILE_UNREADABLE,
    MALFORMED_ROW,
    MISSING_COLUMN,
    QUARANTINE_RATE,
    TYPE_MISMATCH,
    UNSAFE_FILE_NAME,
    Contract,
    compute_masks,
    contract_for,
    describe_failure,
)
from pipelines.core.errors import ContractHalt, NothingLanded
from pipelines.core.partitions import ds_str

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class _Combined:
    frame: pd.DataFrame
    raw_tables: list[Any]
    offsets: list[int]
    source_file: np.ndarray
    source_row: np.ndarray
    type_fail_cols: dict[str, np.ndarray]
    missing_mask: np.ndarray
    missing_cols_by_file: dict[str, list[str]]
    malformed: list[tuple[str, int | None, str]]
    extra_cols_by_file: dict[str, list[str]]


def _combine(parsed: list[Any], contract: Contract) -> _Combined:
    """Coerce each parsed file and stack them into one typed frame."""
    import numpy as np
    import pandas as pd

    from pipelines.ingest.landing import coerce_column

    frames, raw_tables, offsets = [], [], []
    src_file, src_row = [], []
    type_fail: dict[str, list[np.ndarray]] = {c: [] for c in contract.column_names}
    missing: list[np.ndarray] = []
    missing_by_file: dict[str, list[str]] = {}
    extra_by_file: dict[str, list[str]] = {}
    malformed: list[tuple[str, int | None, str]] = []
    offset = 0
    for pf in parsed:
        malformed.extend((pf.name, line, text) for line, text in pf.malformed)
        if pf.extra_columns:
            extra_by_file[pf.name] = pf.extra_columns
        n = pf.num_rows
        cols = {}
        for col in contract.columns:
            if col.name in pf.table.column_names:
                series, fails = coerce_column(pf.table.column(col.name), col.logical_type)
                cols[col.name] = series.reset_index(drop=True)
                type_fail[col.name].append(fails)
            else:
                dtype = "float64" if col.logical_type in ("integer", "number") else object
                if col.logical_type in ("timestamp", "date"):
                    cols[col.name] = pd.Series(pd.NaT, index=range(n), dtype="datetime64[us, UTC]")
                else:
                    cols[col.name] = pd.Series(np.full(n, np.nan) if dtype == "float64" else [None] * n, dtype=dtype)
                type_fail[col.name].append(np.zeros(n, dtype=bool))
        frames.append(pd.DataFrame(cols))
        raw_tables.append(pf.table)
        offsets.append(offset)
        offset += n
        src_file.append(np.full(n, pf.name, dtype=object))
        src_row.append(np.arange(1, n + 1, dtype=np.int64))
        missing.append(np.full(n, bool(pf.missing_columns)))
        if pf.missing_columns:
            missing_by_file[pf.name] = pf.missing_columns
    if frames:
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    else:
        frame = pd.DataFrame({c: pd.Series([], dtype="float64") for c in contract.column_names})

    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    return _Combined(
        frame=frame,
        raw_tables=raw_tables,
        offsets=offsets,
        source_file=cat(src_file, object),
        source_row=cat(src_row, np.int64),
        type_fail_cols={c: cat(v, bool) for c, v in type_fail.items()},
        missing_mask=cat(missing, bool),
        missing_cols_by_file=missing_by_file,
        malformed=malformed,
        extra_cols_by_file=extra_by_file,
    )


def run_expectations(contract: Contract, frame: pd.DataFrame, ds: str) -> dict[str, Any]:
    """Run the contract's GX suite on the typed frame.

    Returns:
        ``{"success", "statistics", "by_rule": {rule_id: {...}}, "raw": <GX result JSON>}``.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # GX logs every registered helper at INFO; task logs are for people.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from pipelines.core.contracts import build_expectations

    # GX sets this module's logger to INFO itself on import; quiet it after.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = ctx.data_sources.add_pandas(name="landed")
    asset = source.add_dataframe_asset(name=contract.name)
    batch_def = asset.add_batch_definition_whole_dataframe(name=f"ds={ds}")
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"{contract.id}@{contract.version}"))
    for exp in build_expectations(contract, ds):
        suite.add_expectation(exp)
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
    # BASIC carries unexpected counts (all the reconciliation needs) and is
    # about 1.5x faster than the default SUMMARY at 1M rows.
    result = batch.validate(suite, result_format="BASIC")
    by_rule: dict[str, dict[str, Any]] = {}
    for r in result.results:
        meta = r.expectation_config.meta or {}
        rid = meta.get("rule_id")
        res = r.result or {}
        entry = by_rule.setdefault(
            rid, {"success": True, "unexpected_count": 0, "parts": 0, "max_part": 0, "observed_value": None}
        )
        entry["success"] = entry["success"] and bool(r.success)
        cnt = int(res.get("unexpected_count") or 0)
        entry["unexpected_count"] += cnt
        entry["max_part"] = max(entry["max_part"], cnt)
        entry["parts"] += 1
        if "observed_value" in res:
            entry["observed_value"] = res["observed_value"]
        if r.exception_info and r.exception_info.get("raised_exception"):
            entry["exception"] = r.exception_info.get("exception_message")
    return {
        "success": bool(result.success),
        "statistics": dict(result.statistics),
        "by_rule": by_rule,
        "raw": result.to_json_dict(),
    }


def _row_reasons(
    contract: Contract, comb: _Combined, masks: dict[str, np.ndarray], quarantine_ids: list[str], q_idx: np.ndarray
) -> tuple[list[list[str]], list[list[str]]]:
    """Rule ids and reasons of each quarantined row, aligned with ``q_idx``.

    Built for quarantined rows only: a million clean rows cost nothing here.
    """
    import numpy as np

    ids: list[list[str]] = [[] for _ in range(len(q_idx))]
    reasons: list[list[str]] = [[] for _ in range(len(q_idx))]

    def hits(mask: np.ndarray) -> list[int]:
        """Positions in ``q_idx`` of the quarantined rows that ``mask`` flags."""
        return np.flatnonzero(mask[q_idx]).tolist()

    for rid in quarantine_ids:
        if rid == TYPE_MISMATCH:
            for col, fails in comb.type_fail_cols.items():
                for p in hits(fails):
                    if TYPE_MISMATCH not in ids[p]:
                        ids[p].append(TYPE_MISMATCH)
                    reasons[p].append(f"{col} is not a valid {contract.column(col).logical_type}")
        elif rid == MISSING_COLUMN:
            for p in hits(comb.missing_mask):
                ids[p].append(MISSING_COLUMN)
                cols = comb.missing_cols_by_file.get(comb.source_file[q_idx[p]], [])
                reasons[p].append(f"file lacks column(s) {', '.join(cols)}")
        elif rid in masks:  # row rules; malformed rows carry their own reason
            why = describe_failure(contract.rule(rid))
            for p in hits(masks[rid]):
                ids[p].append(rid)
                reasons[p].append(why)
    return ids, reasons


def _raw_rows(comb: _Combined, rows: np.ndarray) -> Any:
    """The quarantined rows with every delivered column as its original text."""
    import numpy as np
    import pyarrow as pa

    pieces = []
    all_cols: list[str] = []
    for tbl in comb.raw_tables:
        for c in tbl.column_names:
            if c not in all_cols:
                all_cols.append(c)
    for tbl, off in zip(comb.raw_tables, comb.offsets, strict=True):
        local = rows[(rows >= off) & (rows < off + tbl.num_rows)] - off
        if len(local) == 0:
            continue
        sub = tbl.take(pa.array(local.astype(np.int64)))
        arrays = []
        for c in all_cols:
            if c in sub.column_names:
                col = sub.column(c)
                arrays.append(col if pa.types.is_string(col.type) else col.cast(pa.string()))
            else:
                arrays.append(pa.nulls(len(local), pa.string()))
        pieces.append(pa.table(arrays, names=all_cols))
    if not pieces:
        return pa.table({c: pa.array([], pa.string()) for c in all_cols})
    return pa.concat_tables(pieces)


def _typed_table(contract: Contract, frame: pd.DataFrame) -> Any:
    import pyarrow as pa

    from pipelines.ingest.landing import output_schema

    schema = output_schema(contract)
    arrays = []
    for f in schema:
        col = frame[f.name]
        if pa.types.is_string(f.type):
            arrays.append(pa.array(col, type=f.type, from_pandas=True))
        else:
            # Integers are held as float64 while validating; timestamps may be
            # ns. Values were range- and type-checked, so this cast is exact
            # but for sub-microsecond timestamp digits, which are truncated.
            arrays.append(pa.array(col.to_numpy(), from_pandas=True).cast(f.type, safe=False))
    return pa.Table.from_arrays(arrays, schema=schema)


def delivery(project: ProjectConfig, ds: str, storage: Storage) -> list[catalog.Landed]:
    """The complete delivery of a partition: its data files, once the ready marker is there.

    Raises:
        NothingLanded: no data file landed, or the ready marker (when the
            dataset has one) is missing: a half-delivered day is never validated.
    """
    dataset = project.dataset.name
    landed = catalog.landed_files(storage, dataset, ds)
    folder = storage.uri(catalog.landing_dir(dataset, ds))
    if not landed:
        raise NothingLanded(f"nothing landed for {dataset} ds={ds} (looked in {folder})")
    marker = project.ingest.ready_marker
    if marker and not storage.exists(catalog.landing_file(dataset, ds, marker)):
        raise NothingLanded(
            f"{dataset} ds={ds}: delivery not complete, no {marker} marker in {folder} ({len(landed)} file(s) so far)"
        )
    return landed


def validate_partition(
    project: ProjectConfig, ds: str, *, storage: Storage | None = None, contract: Contract | None = None
) -> dict[str, Any]:
    """Validate one landed partition against the project's data contract.

    Args:
        project: the model project (its dataset and contract).
        ds: partition key ``YYYY-MM-DD``.
        storage: storage to use (default: the configured root).
        contract: compiled contract (default: the project's).

    Returns:
        The summary (also saved in the report): ``ds``, ``status``,
        ``landed_rows``, ``validated_rows``, ``quarantined_rows``,
        ``quarantined_files``, ``rules_failed``, ``rules_warned``,
        ``rule_counts``, ``report`` and more.

    Raises:
        NothingLanded: no file landed for the partition, or the delivery is
            not complete (its ready marker is missing).
        ContractHalt: a halt rule fired; the report is written, nothing published.
    """
    import numpy as np

    from pipelines.core.storage import get_storage
    from pipelines.ingest.landing import BadFile, read_landed_file

    t0 = time.monotonic()
    ds = ds_str(ds)
    storage = storage or get_storage()
    contract = contract or contract_for(project)
    dataset = project.dataset.name
    landed = delivery(project, ds, storage)
    keys = [f.key for f in landed]
    log.info(
        "validating %s ds=%s: %d landed file(s), contract %s v%s", dataset, ds, len(keys), contract.id, contract.version
    )

    parsed, bad = [], []
    for f in landed:
        item = read_landed_file(storage, f.key, contract, name=f.name)
        (bad if isinstance(item, BadFile) else parsed).append(item)
    for b in bad:
        log.warning("file %s quarantined: %s", b.name, b.reason)
    comb = _combine(parsed, contract)
    for name, cols in comb.extra_cols_by_file.items():
        log.warning("file %s has column(s) the contract does not know, dropped: %s", name, ", ".join(cols))
    frame = comb.frame
    n = len(frame)
    n_malformed = len(comb.malformed)
    landed_rows = n + n_malformed
    good_bytes = sum(p.size for p in parsed)
    bad_bytes = sum(b.size for b in bad if b.size > 0)

    masks = compute_masks(contract, frame, ds)
    masks[TYPE_MISMATCH] = np.zeros(n, dtype=bool)
    for fails in comb.type_fail_cols.values():
        masks[TYPE_MISMATCH] |= fails
    masks[MISSING_COLUMN] = comb.missing_mask
    gx = run_expectations(contract, frame, ds)

    # Decide, rule by rule.
    rules_out = []
    halt_rules, quarantine_ids, warned = [], [], []
    disagreements = []
    for rule in contract.all_rules:
        if rule.id == QUARANTINE_RATE:
            continue
        g = gx["by_rule"].get(rule.id)
        if rule.id == MALFORMED_ROW:
            count, failed = n_malformed, n_malformed > 0
        elif rule.id == UNSAFE_FILE_NAME:
            count = sum(1 for b in bad if not b.copyable)
            failed = count > 0
        elif rule.row_level:
            count = int(masks[rule.id].sum())
            failed = count > 0
        else:  # row_count, over every landed row
            lo, hi = rule.params["min"], rule.params["max"]
            failed = (lo is not None and landed_rows < lo) or (hi is not None and landed_rows > hi)
            count = None
        if g is not None and rule.row_level:
            if g["parts"] > 1:  # one expectation per part: a row may break several
                agree = g["max_part"] <= count <= g["unexpected_count"]
            else:
                agree = g["unexpected_count"] == count
            if not agree:
                disagreements.append(rule.id)
                log.warning("rule %s: GX counted %s unexpected, masks %s", rule.id, g["unexpected_count"], count)
        if failed:
            {"halt": halt_rules, "quarantine": quarantine_ids, "warn": warned}[rule.action].append(rule.id)
        rules_out.append(
            {
                "id": rule.id,
                "kind": rule.kind,
                "columns": list(rule.columns),
                "severity": rule.severity,
                "action": rule.action,
                "failed": bool(failed),
                "rows": count,
                "gx_success": None if g is None else g["success"],
                "gx_unexpected_count": None if g is None else g["unexpected_count"],
                "observed_value": None if g is None else g["observed_value"],
                "description": rule.description or describe_failure(rule),
            }
        )

    q_mask = np.zeros(n, dtype=bool)
    for rid in quarantine_ids:
        if rid in masks:
            q_mask |= masks[rid]
    q_malformed = n_malformed if MALFORMED_ROW in quarantine_ids else 0
    q_rows = int(q_mask.sum()) + q_malformed
    # An unreadable file's rows cannot be counted: its share of the landed
    # bytes stands in for them, so losing a whole airport's file halts the
    # day while a small corrupt side file does not.
    row_rate = q_rows / landed_rows if landed_rows else 0.0
    byte_rate = bad_bytes / (good_bytes + bad_bytes) if bad_bytes else 0.0
    rate = max(row_rate, byte_rate)
    rate_rule = contract.rule(QUARANTINE_RATE)
    rate_failed = rate > contract.max_quarantine_rate
    if rate_failed:
        halt_rules.append(QUARANTINE_RATE)
    rules_out.append(
        {
            "id": QUARANTINE_RATE,
            "kind": QUARANTINE_RATE,
            "columns": [],
            "severity": rate_rule.severity,
            "action": "halt",
            "failed": rate_failed,
            "rows": q_rows,
            "observed_value": {"rows": round(row_rate, 6), "unreadable_bytes": round(byte_rate, 6)},
            "gx_success": None,
            "gx_unexpected_count": None,
            "description": rate_rule.description,
        }
    )
    status = "halted" if halt_rules else "published"
    rule_counts = {r["id"]: r["rows"] for r in rules_out if r["failed"]}
    readable_bad = [b for b in bad if b.copyable]
    rules_failed = sorted(rule_counts) + ([FILE_UNREADABLE] if readable_bad else [])
    summary: dict[str, Any] = {
        "ds": ds,
        "dataset": dataset,
        "model": project.name,
        "contract": contract.id,
        "contract_version": contract.version,
        "status": status,
        "landed_files": len(keys),
        "landed_rows": landed_rows,
        "validated_rows": n - int(q_mask.sum()) if status == "published" else 0,
        "quarantined_rows": q_rows if status == "published" else 0,
        "quarantine_rate": round(rate, 6),
        "quarantined_files": [
            {
                "file": b.name,
                "rule": FILE_UNREADABLE if b.copyable else UNSAFE_FILE_NAME,
                "reason": b.reason,
                "bytes": b.size,
            }
            for b in bad
        ],
        "rules_failed": rules_failed,
        "rules_halted": sorted(halt_rules),
        "rules_quarantined": sorted(quarantine_ids),
        "rules_warned": sorted(warned),
        "rule_counts": rule_counts,
        "extra_columns": comb.extra_cols_by_file,
        "gx_mask_disagreements": disagreements,
    }

    report_json = catalog.validation_report(dataset, ds)
    report_html = catalog.validation_html(dataset, ds)
    summary["report"] = storage.uri(report_json)
    summary["report_html"] = storage.uri(report_html)

    if status == "halted":
        # Nothing of this partition may stay visible downstream.
        storage.delete_prefix(catalog.validated_dir(dataset, ds))
        storage.delete_prefix(catalog.quarantine_dir(dataset, ds))
    else:
        # Build every output before the first write: a failure here must not
        # leave a new quarantine beside an old validated file.
        q_idx = np.flatnonzero(q_mask)
        ids, reasons = _row_reasons(contract, comb, masks, quarantine_ids, q_idx)
        q_table = _quarantine_table(comb, q_idx, ids, reasons, include_malformed=bool(q_malformed))
        v_table = _typed_table(contract, frame[~q_mask])
        if q_table.num_rows != q_rows or v_table.num_rows + q_rows != landed_rows:  # invariant 1
            raise RuntimeError(f"row accounting broken: {v_table.num_rows} + {q_table.num_rows} != {landed_rows}")
        storage.delete_prefix(catalog.quarantine_files_dir(dataset, ds))
        storage.write_parquet(catalog.quarantine_rows(dataset, ds), q_table)
        for b in readable_bad:
            storage.write_bytes(catalog.quarantine_file(dataset, ds, b.name), storage.read_bytes(b.key))
        storage.write_json(catalog.quarantine_index(dataset, ds), summary["quarantined_files"])
        storage.write_parquet(catalog.validated_file(dataset, ds), v_table, row_group_size=256_000)
        summary["validated"] = storage.uri(catalog.validated_file(dataset, ds))
        summary["quarantine"] = storage.uri(catalog.quarantine_rows(dataset, ds))
    summary["seconds"] = round(time.monotonic() - t0, 3)
    storage.write_json(
        report_json,
        {
            "summary": summary,
            "rules": rules_out,
            "files": [
                {
                    "file": p.name,
                    "bytes": p.size,
                    "rows": p.num_rows + len(p.malformed),
                    "missing_columns": p.missing_columns,
                    "extra_columns": p.extra_columns,
                }
                for p in parsed
            ],
            "great_expectations": gx["raw"],
        },
    )
    storage.write_text(report_html, render_html(summary, rules_out))
    log.info(
        "%s ds=%s %s: landed=%d validated=%d quarantined=%d files_quarantined=%d rules_failed=%s report=%s",
        dataset,
        ds,
        status,
        landed_rows,
        summary["validated_rows"],
        summary["quarantined_rows"],
        len(bad),
        ",".join(rules_failed) or "-",
        summary["report"],
    )
    if status == "halted":
        raise ContractHalt(
            f"{dataset} ds={ds} halted by {', '.join(sorted(halt_rules))}: nothing published; see {summary['report']}",
            ds=ds,
            rules=sorted(halt_rules),
            report=summary["report"],
            summary=summary,
        )
    return summary


def _quarantine_table(
    comb: _Combined, q_idx: Any, ids: list[list[str]], reasons: list[list[str]], *, include_malformed: bool
) -> Any:
    """Quarantined rows: every delivered column as text, plus where they came from and why."""
    import pyarrow as pa

    raw = _raw_rows(comb, q_idx)
    raw = raw.append_column("_source_file", pa.array(comb.source_file[q_idx].tolist(), pa.string()))
    raw = raw.append_column("_source_row", pa.array(comb.source_row[q_idx], pa.int64()))
    raw = raw.append_column("_rule_ids", pa.array(ids, pa.list_(pa.string())))
    raw = raw.append_column("_reasons", pa.array(reasons, pa.list_(pa.string())))
    raw = raw.append_column("_raw_line", pa.nulls(raw.num_rows, pa.string()))
    if include_malformed and comb.malformed:
        m = len(comb.malformed)
        extra = {c: pa.nulls(m, pa.string()) for c in raw.column_names if not c.startswith("_")}
        extra["_source_file"] = pa.array([f for f, _, _ in comb.malformed], pa.string())
        extra["_source_row"] = pa.array([line for _, line, _ in comb.malformed], pa.int64())
        extra["_rule_ids"] = pa.array([[MALFORMED_ROW]] * m, pa.list_(pa.string()))
        extra["_reasons"] = pa.array([["row does not split into the header's columns"]] * m, pa.list_(pa.string()))
        extra["_raw_line"] = pa.array([t for _, _, t in comb.malformed], pa.string())
        raw = pa.concat_tables([raw, pa.table(extra).select(raw.column_names)])
    return raw


def render_html(summary: dict[str, Any], rules: list[dict[str, Any]]) -> str:
    """A self-contained human-readable validation report."""
    e = html.escape
    colour = {"published": "#1a7f37", "halted": "#cf222e"}[summary["status"]]
    rows = []
    for r in rules:
        state = "FAILED" if r["failed"] else "ok"
        style = (
            ' style="background:#ffebe9"'
            if r["failed"] and r["action"] != "warn"
            else (' style="background:#fff8c5"' if r["failed"] else "")
        )
        rows.append(
            f"<tr{style}><td><code>{e(r['id'])}</code></td><td>{e(r['kind'])}</td>"
            f"<td>{e(', '.join(r['columns']))}</td><td>{e(r['severity'])} &rarr; {e(r['action'])}</td>"
            f"<td>{state}</td><td>{'' if r['rows'] is None else r['rows']}</td>"
            f"<td>{'' if r['gx_unexpected_count'] is None else r['gx_unexpected_count']}</td>"
            f"<td>{e(str(r['observed_value'])) if r['observed_value'] is not None else ''}</td>"
            f"<td>{e(r['description'])}</td></tr>"
        )
    files = (
        "".join(f"<li><code>{e(f['file'])}</code>: {e(f['reason'])}</li>" for f in summary["quarantined_files"])
        or "<li>none</li>"
    )
    facts = "".join(
        f"<tr><th>{e(k)}</th><td>{e(str(summary[k]))}</td></tr>"
        for k in (
            "dataset",
            "ds",
            "contract",
            "contract_version",
            "landed_files",
            "landed_rows",
            "validated_rows",
            "quarantined_rows",
            "quarantine_rate",
            "rules_halted",
            "rules_warned",
        )
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Validation {e(summary["dataset"])} ds={e(summary["ds"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #d0d7de;padding:4px 8px;text-align:left;font-size:14px}}</style></head>
<body><h1>{e(summary["dataset"])} ds={e(summary["ds"])}:
<span style="color:{colour}">{e(summary["status"].upper())}</span></h1>
<table>{facts}</table>
<h2>Unreadable files (quarantined whole)</h2><ul>{files}</ul>
<h2>Rules</h2>
<table><tr><th>rule</th><th>kind</th><th>columns</th><th>severity &rarr; action</th><th>result</th>
<th>rows</th><th>GX unexpected</th><th>observed</th><th>description</th></tr>
{"".join(rows)}</table>
<p>Full Great Expectations result: <code>validation.json</code> beside this file.</p>
</body></html>
"""
