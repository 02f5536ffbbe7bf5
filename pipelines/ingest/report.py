"""The validation report: its summary (what the CLI prints and the DAG's asset event carries) and its HTML."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from pipelines.core.contracts import EMPTY_FILE, UNSAFE_FILE_NAME

if TYPE_CHECKING:
    from pipelines.core.config import DatasetConfig
    from pipelines.core.contracts import Contract
    from pipelines.ingest.batches import FileRead
    from pipelines.ingest.decision import Decision
    from pipelines.ingest.validation import Reading


def build_summary(
    dataset: DatasetConfig,
    contract: Contract,
    ds: str,
    landed_files: int,
    reading: Reading,
    decision: Decision,
) -> dict[str, Any]:
    """The partition's summary (pure): counts, rules failed by action, and the files quarantined whole.

    When published, ``landed_rows == validated_rows + quarantined_rows`` and
    ``landed_records == validated_rows + quarantined_records + lost_records``.
    """
    tally, published = reading.tally, decision.status == "published"
    rule_counts = decision.rule_counts
    kept = [{k: v for k, v in f.items() if not k.startswith("_")} for f in reading.kept_files]
    whole_file_rules = sorted({f["rule"] for f in kept} - set(rule_counts) - {UNSAFE_FILE_NAME, EMPTY_FILE})
    return {
        "ds": ds,
        "dataset": dataset.name,
        "contract": contract.id,
        "contract_version": contract.version,
        "status": decision.status,
        "landed_files": landed_files,
        "landed_rows": tally.landed_rows,
        "landed_records": tally.landed_records,
        "validated_rows": tally.rows - (decision.quarantined_rows - decision.quarantined_malformed) if published else 0,
        "quarantined_rows": decision.quarantined_rows if published else 0,
        "quarantined_records": decision.quarantined_records if published else 0,
        "lost_records": tally.lost_records,
        "quarantine_rate": round(decision.rate, 6),
        "quarantined_files": kept,
        "empty_files": list(tally.empty_files),
        "rules_failed": sorted(rule_counts) + whole_file_rules,
        "rules_halted": decision.halted,
        "rules_quarantined": decision.quarantined,
        "rules_warned": decision.warned,
        "rule_counts": rule_counts,
        "extra_columns": reading.extra_cols_by_file,
        "gx_mask_disagreements": decision.disagreements,
    }


def report_document(
    summary: dict[str, Any], decision: Decision, parsed: list[FileRead], gx_raw: dict[str, Any]
) -> dict[str, Any]:
    """The JSON report: the summary, every rule's outcome, every readable file, and GX's full result."""
    return {
        "summary": summary,
        "rules": decision.rules,
        "files": [
            {
                "file": p.name,
                "bytes": p.size,
                "records": p.records,
                "rows": p.num_rows + p.malformed_rows,
                "lost_records": p.lost,
                "missing_columns": p.missing_columns,
                "extra_columns": p.extra_columns,
            }
            for p in parsed
        ],
        "great_expectations": gx_raw,
    }


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
            "landed_records",
            "validated_rows",
            "quarantined_rows",
            "quarantined_records",
            "lost_records",
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
<h2>Files quarantined whole</h2><ul>{files}</ul>
<h2>Rules</h2>
<table><tr><th>rule</th><th>kind</th><th>columns</th><th>severity &rarr; action</th><th>result</th>
<th>rows</th><th>GX unexpected</th><th>observed</th><th>description</th></tr>
{"".join(rows)}</table>
<p>Full Great Expectations result: <code>validation.json</code> beside this file.</p>
</body></html>
"""
