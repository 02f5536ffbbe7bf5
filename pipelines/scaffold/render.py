"""The three files, as commented YAML text: the contract, the dataset config and the project config.

Written as text, not dumped, so every section carries a comment saying what
it is and what to review; values go through PyYAML's flow style
(:func:`flow`), so a name or value YAML would misread is quoted. Suggestions
that need a decision are marked ``# REVIEW:``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog

if TYPE_CHECKING:
    from pipelines.scaffold.choices import ProjectDraft
    from pipelines.scaffold.infer import ContractDraft
    from pipelines.scaffold.profile import ColumnInfo
    from pipelines.scaffold.sample import Sample

PHYSICAL = {
    "integer": "int64",
    "number": "float64",
    "string": "string",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}


def flow(value: Any) -> str:
    """One YAML value in flow style, on one line (quoted where plain text would be misread)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, allow_unicode=True, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def rule_id(column: str, suffix: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", column.lower()).strip("_") + f"_{suffix}"


def _plain(value: Any) -> Any:
    """A numpy or pandas number as a plain Python one (integers stay integers)."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _outward(value: float, up: bool) -> float:
    """``value`` rounded away from the range's inside to four significant digits."""
    import math

    if value == 0:
        return 0.0
    step = 10.0 ** (math.floor(math.log10(abs(value))) - 3)
    return float(f"{(math.ceil if up else math.floor)(value / step) * step:.6g}")


def suggested_range(lo: Any, hi: Any, ltype: str) -> tuple[float | int, float | int]:
    """The sample's ``[lo, hi]`` widened by a quarter of its span on each side (not below 0 when the
    sample is not), rounded outward: integers to integers, numbers to four significant digits."""
    import math

    lo, hi = float(lo), float(hi)
    margin = (hi - lo) / 4 or abs(lo) / 4 or 1.0
    low, high = lo - margin, hi + margin
    if lo >= 0:
        low = max(low, 0.0)
    if ltype == "integer":
        return math.floor(low), math.ceil(high)
    return _outward(low, up=False), _outward(high, up=True)


def sample_line(sample: Sample) -> str:
    days = sample.known_days
    span = f"{len(days)} day(s), {days[0]}..{days[-1]}" if days else "1 delivery of an unnamed day"
    more = ""
    if sample.days_found > len(sample.days):
        more = f" (the latest {len(sample.days)} of {sample.days_found} read)"
    return f"{sample.path}: {sample.files} file(s), {span}{more}, {sample.rows} rows"


# ---- the contract


def _column(info: ColumnInfo, draft: ContractDraft) -> list[str]:
    """One property of the schema, with its suggested rules."""
    seen = f"{info.distinct} distinct value(s), {info.nulls} null(s) in {info.rows} sample rows"
    lines = [f"      - name: {flow(info.name)}", f"        logicalType: {info.logical_type}"]
    lines.append(f"        physicalType: {PHYSICAL[info.logical_type]}")
    if info.name == draft.outcome:
        lines.append("        # not required: the target; a row may be delivered before its outcome is known")
    elif info.required:
        lines.append("        required: true            # no null in the sample: a null is quarantined")
    else:
        lines.append(f"        # not required: {info.nulls} null(s) in the sample")
    if info.name in draft.primary_key:
        lines.append("        primaryKey: true")
        lines.append(f"        primaryKeyPosition: {draft.primary_key.index(info.name) + 1}")
    notes = "; ".join(info.notes)
    lines.append(f"        description: {flow('Inferred from the sample: ' + seen + (f'; {notes}' if notes else ''))}")
    rules = _column_rules(info, draft)
    if rules:
        lines.append("        quality:")
        lines += rules
    return lines


def _column_rules(info: ColumnInfo, draft: ContractDraft) -> list[str]:
    if info.name in draft.primary_key or info.name in draft.partition_columns or info.id_like:
        return []
    if info.logical_type in ("integer", "number") and info.minimum is not None:
        lo, hi = suggested_range(info.minimum, info.maximum, info.logical_type)
        return [
            f"          # REVIEW: the sample held {flow(_plain(info.minimum))}..{flow(_plain(info.maximum))}; "
            "suggested with a margin of a quarter of that span.",
            "          # Set what is valid, then severity: error to quarantine what is outside.",
            f"          - id: {flow(rule_id(info.name, 'range'))}",
            "            metric: invalidValues",
            f"            arguments: {flow({'minimum': lo, 'maximum': hi})}",
            "            mustBe: 0",
            "            severity: warning",
        ]
    if info.logical_type == "string" and info.values and info.rows >= 5 * len(info.values):
        return [
            "          # REVIEW: the values seen in the sample; add the valid ones it missed, then severity: error",
            f"          - id: {flow(rule_id(info.name, 'known'))}",
            "            metric: invalidValues",
            f"            arguments: {{validValues: {flow([str(v) for v in info.values])}}}",
            "            mustBe: 0",
            "            severity: warning",
        ]
    return []


def _table_rules(draft: ContractDraft) -> list[str]:
    lo, hi = draft.row_count
    lines = [
        "    quality:",
        "      # REVIEW: a tenth of the sample's smallest day to ten times its largest; a day outside halts",
        "      - id: row_count",
        "        metric: rowCount",
        f"        mustBeBetween: [{lo}, {hi}]",
        "        severity: critical",
        "        description: Rows in one delivery; far outside means a broken export.",
    ]
    if draft.primary_key:
        lines += [
            "      # REVIEW: the fewest columns unique within every sample day. Confirm it is the natural key",
            "      # (scoring writes it and a row_id hashed from it), then severity: error to quarantine duplicates.",
            "      - id: natural_key_unique",
            "        metric: duplicateValues",
            f"        arguments: {{properties: {flow(draft.primary_key)}}}",
            "        mustBe: 0",
            "        severity: warning",
            "        description: One row per key and day.",
        ]
    else:
        lines += [
            "      # REVIEW: no column combination of up to three is unique within every sample day. Scoring",
            "      # needs a natural key: mark its columns primaryKey: true (with primaryKeyPosition) below.",
        ]
    if draft.partition:
        lines.append("      # Every sample row is on its delivery's day; a mis-delivered file halts the day.")
        zone = draft.partition.get("timezone")
        if zone == "UTC":
            lines.append("      # REVIEW: timestamps without an offset are read as UTC; else name their zone.")
        elif zone:
            lines.append("      # REVIEW: a fixed-offset zone fits the sample; name your zone if it has DST.")
        lines += [
            "      - id: partition_date_matches",
            "        type: custom",
            "        engine: pipelines",
            "        implementation: partitionDateMatches",
            f"        arguments: {flow(draft.partition)}",
            "        severity: critical",
            "        description: Every row's date equals the partition key.",
        ]
    else:
        lines += [
            "      # No partition-date rule: no date, timestamp or year/month/day columns put every sample row on",
            "      # its day. Add one (type: custom, engine: pipelines, implementation: partitionDateMatches) if a",
            "      # column says which day a row belongs to.",
        ]
    return lines


CONTRACT_HEADER = """\
# Data contract of the dataset {dataset}: a DRAFT that `pipelines new-project` inferred from the sample
#   {sample}
# Open Data Contract Standard v3.1, read by pipelines/core/contracts.py (its docstring lists every
# supported entry; data_contracts/flights.odcs.yaml is a reviewed example).
#
# What was inferred, and how far to trust it:
#   - columns and types: how every sample value reads; a value of another type is quarantined.
#   - required: true: the column had no null in the sample; a null is quarantined. REVIEW: a column
#     whose value may come later (an outcome, a model's target) must not be required.
#   - ranges and allowed values: what the sample held. SUGGESTIONS: severity warning (reported, never
#     quarantined). Each is marked REVIEW: set what is valid, then raise it to error.
#   - the natural key, the row-count bounds and the partition-date rule: see their comments.
# Set status: active and the description once reviewed; bump version on every change.
apiVersion: v3.1.0
kind: DataContract
id: {dataset}
name: {dataset}
version: 0.1.0
status: draft
description:
  purpose: {purpose}  # REVIEW
  usage: {usage}
  limitations: Inferred from a sample; see the REVIEW comments.
customProperties:
  - property: severityActions
    value: {{critical: halt, error: quarantine, warning: warn}}
  - property: maxQuarantineRate
    value: 0.05
    description: Share of landed rows quarantined above which the whole partition halts.
  - property: typeMismatchSeverity
    value: error
    description: A value that cannot be read as its column's type.
  - property: missingColumnSeverity
    value: error
    description: A delivered file lacks a contract column; all its rows are affected.
  - property: requiredSeverity
    value: error
    description: Severity of the not-null rule generated for each required column.
  - property: malformedRowSeverity
    value: error
    description: A CSV record that does not split into the header's columns, or whose values span lines.
  - property: emptyFileSeverity
    value: critical
    description: A data file with no records is an export that failed upstream.
  # A complete delivery of several files (one per source) can be required with expectedSources:
  # see data_contracts/flights.odcs.yaml.
schema:
  - name: {dataset}
    physicalName: {dataset}
    physicalType: table
"""


def render_contract(draft: ContractDraft, sample: Sample, project: str | None) -> str:
    """The contract's YAML text."""
    usage = f"Input of the {project} model project." if project else "Input of model projects."
    text = CONTRACT_HEADER.format(
        dataset=draft.dataset,
        sample=sample_line(sample),
        purpose=flow(f"Deliveries of {draft.dataset}, one per day."),
        usage=flow(usage),
    )
    lines = _table_rules(draft)
    if draft.dropped:
        lines.append("    # Left out of the contract (validation records them as extra columns):")
        lines += [f"    #   {name}: {why}" for name, why in draft.dropped.items()]
    lines.append("    properties:")
    for info in draft.columns.values():
        lines += _column(info, draft)
    return text + "\n".join(lines) + "\n"


# ---- the dataset


DATASET_TEMPLATE = """\
# Dataset {dataset}: a DRAFT written by `pipelines new-project` from the sample
#   {sample}
# Declared once; every model project that reads it says `dataset: {dataset}`. One ingest DAG
# (ingest_{dataset}) validates each delivery ({example}/) against the contract
# and publishes it once; the projects' drift, retrain and scoring DAGs follow it.
name: {dataset}
description: {description}  # REVIEW
owner: data-platform          # REVIEW: the team that answers for the feed
tags: [{dataset}]

contract: {contract}     # in data_contracts/
landing_format: {landing_format}          # the sample's files

ingest:
  schedule: "@daily"          # REVIEW: when a day's delivery is complete upstream
  ready_marker: {marker}{marker_note}
  start_date: {start_date}      # the sample's first day
  end_date: null
  catchup: false
  sensor_poke_seconds: 300
  sensor_timeout_minutes: 360
  retries: 2
"""


def render_dataset(draft: ContractDraft, sample: Sample, contract_file: str, start: str) -> str:
    """The dataset config's YAML text."""
    if sample.ready_marker:
        marker_note = "        # every sample delivery had it: upstream writes it last; validation waits for it"
    else:
        marker_note = (
            "             # REVIEW: the sample had no marker, so any landed file counts as a delivery;\n"
            "                              # ask upstream to write _SUCCESS last, and name it here"
        )
    return DATASET_TEMPLATE.format(
        dataset=draft.dataset,
        sample=sample_line(sample),
        example=catalog.landing_dir(draft.dataset, start),
        description=flow(f"Deliveries of {draft.dataset}, one per day."),
        contract=flow(contract_file),
        landing_format=sample.landing_format,
        marker=flow(sample.ready_marker),
        marker_note=marker_note,
        start_date=start,
    )


# ---- the project


def _task_blocks(draft: ProjectDraft) -> dict[str, str]:
    """The task's metrics, floor and decay limit, and the estimator's parameters."""
    params = {"n_estimators": 200, "max_depth": 4, "learning_rate": 0.05, "min_child_weight": 5}
    params |= {"subsample": 0.8, "colsample_bytree": 0.8}
    if draft.task == "classification":
        return {
            "params": flow(params),
            "metrics": "  primary: roc_auc\n  secondary: [pr_auc, log_loss, brier]\n  classification_threshold: 0.5",
            "floors": "{roc_auc: 0.55}       # REVIEW: the worst model worth serving (0.5 is a coin toss)",
            "min_change": "{roc_auc: {absolute: 0.0}}",
            "decay": "{log_loss: {relative: 0.2}}   # REVIEW: how much worse than at training is too much",
            "tolerance": "the roc_auc a slice may lose",
        }
    return {
        "params": flow({"objective": "reg:absoluteerror", **params}),
        "metrics": "  primary: mae\n  secondary: [mae_skill, rmse, r2]",
        "floors": "{mae_skill: 0.0}      # beats the best constant guess (the median); REVIEW: ask for more",
        "min_change": "{mae: {absolute: 0.0}}",
        "decay": "{mae: {relative: 0.3}}       # REVIEW: how much worse than at training is too much",
        "tolerance": "the mae a slice may lose (a tenth of the target's mean deviation)",
    }


def _features_block(draft: ProjectDraft) -> list[str]:
    lines = [
        "# Model inputs, from the contract's columns. REVIEW: keep only what is known when a row is scored;",
        "# a column recorded after the outcome leaks the target and the model fails in production.",
    ]
    if draft.excluded:
        lines.append("# Left out:")
        lines += [f"#   {name}: {why}" for name, why in draft.excluded.items()]
    lines += ["features:", f"  numeric: {flow(draft.numeric)}", f"  categorical: {flow(draft.categorical)}"]
    if draft.expressions:
        lines.append("  expressions:        # DuckDB scalar expressions (pipelines/core/expressions.py)")
        for name, e in draft.expressions.items():
            spec: dict[str, Any] = {"expr": e.expr}
            if e.kind != "numeric":
                spec["kind"] = e.kind
            if e.calendar:
                spec["calendar"] = True
            note = "; ".join(x for x in (e.comment, "calendar: never drift-monitored" if e.calendar else "") if x)
            lines.append(f"    {name}: {flow(spec)}" + (f"   # {note}" if note else ""))
    return lines


def _gate_block(draft: ProjectDraft, blocks: dict[str, str]) -> list[str]:
    s = draft.sizes
    boot = {"samples": 500, "confidence": 0.95, "tolerance": s["bootstrap_tolerance"], "seed": 20130101}
    boot |= {"unit": "day", "min_days": s["min_days"]} if s["min_days"] else {"unit": "row"}
    lines = [
        "# Promotion (pipelines.training.gate): every criterion must pass. A first champion is judged by",
        "# the floors alone; a later challenger also by min_change, the bootstrap of the primary metric's",
        "# gain (its lower bound above -tolerance: not significantly worse) and the slices.",
        "gate:",
        f"  floors: {blocks['floors']}",
        f"  min_change: {blocks['min_change']}",
        f"  bootstrap: {flow(boot)}",
    ]
    if s.get("slice"):
        spec = {"columns": [s["slice"]], "min_size": s["slice_min_size"], "tolerance": s["slice_tolerance"]}
        lines += [
            "  # REVIEW: the slices that must not regress, and the tolerance: " + blocks["tolerance"] + ".",
            "  # unchecked: record lets a holdout too small to check a slice pass; reject once it is large enough.",
            f"  slices: {flow({**spec, 'unchecked': 'record'})}",
        ]
    else:
        lines.append("  slices: {columns: []}   # REVIEW: categorical columns whose every value must not regress")
    lines += [
        f"  min_holdout_rows: {s['min_holdout_rows']}      # half the holdout the sample suggests (at most 200)",
    ]
    if draft.task == "classification":
        lines.append(f"  min_class_rows: {s['min_class_rows']}        # of each class in the holdout")
    return lines


PROJECT_HEAD = """\
# Model project {name}: a DRAFT written by `pipelines new-project` on the dataset {dataset}.
# Everything a DAG, the CLI or dvc.yaml needs to know about the project; environment settings
# (storage root, MLflow) come from a profile in configs/profiles/, never from here. Sizes are
# fitted to {basis}. Lines marked REVIEW need a decision.
name: {name}
description: {description}  # REVIEW: what is predicted, for whom
owner: data-platform          # REVIEW: the team that answers for the model
tags: [{dataset}]

dataset: {dataset}            # configs/datasets/{dataset}.yaml: contract, landing format, ingest schedule

# What the model predicts{why}.
target:
  column: {target}
  task: {task}
"""

PROJECT_TAIL = """\

# Training window (days ending at train's --end-ds); its last holdout_days are never trained on and
# are where the gate judges. REVIEW: grow the window as history accumulates (the flights projects use 60).
training:
  window_days: {window_days}
  holdout_days: {holdout_days}

# The retrain DAG's schedule (it also runs when drift fires, and by hand).
retrain:
  schedule: "@monthly"
  start_date: {start_date}

# Monitoring (pipelines/monitoring/): each check pools the window_days validated days ending at the
# checked one; it signals when drift_share of the monitored features drifted or a live metric decayed
# past performance_decay, and asks for a retraining after `consecutive` signals in a row.
drift:
  window_days: {drift_window}
  drift_share: 0.3            # REVIEW: e.g. one feature in three
  performance_decay: {decay}
  consecutive: 2
  cooldown_days: 14           # partition days after a retraining with no firing
  min_rows: {drift_min_rows}              # half of what a window held in the sample
  reference_sample_rows: 20000

# Batch scoring (pipelines/scoring/): each validated day is scored by the champion, in checkpointed
# chunks of chunk_rows, and published as one Parquet file.
scoring:
  chunk_rows: 100000
  model_choice: current       # backfills can ask for as_of_partition in the DAG params
  schedule: "@daily"
  start_date: {start_date}
  end_date: null
  catchup: false
  sensor_poke_seconds: 300
  sensor_timeout_minutes: 360
  parallel_chunks: 8
  retries: 2
"""


def render_project(draft: ProjectDraft, basis: str) -> str:
    """The project config's YAML text."""
    s = draft.sizes
    blocks = _task_blocks(draft)
    head = PROJECT_HEAD.format(
        name=draft.name,
        dataset=draft.dataset,
        basis=basis,
        description=flow(f"Predict {draft.target} of {draft.dataset} ({draft.task})."),
        why=f" ({draft.threshold_note})" if draft.threshold_note else "",
        target=flow(draft.target),
        task=draft.task,
    )
    if draft.threshold is not None:
        head += f"  positive_threshold: {flow(draft.threshold)}   # label 1 when {draft.target} >= this\n"
    lines = ["", *_features_block(draft), ""]
    lines += ["# Gradient-boosted trees, kept small for a small sample; REVIEW as the data grows."]
    lines += ["model:", "  family: xgboost", f"  params: {blocks['params']}", ""]
    lines += ["metrics:", blocks["metrics"], "", *_gate_block(draft, blocks)]
    tail = PROJECT_TAIL.format(
        window_days=s["window_days"],
        holdout_days=s["holdout_days"],
        start_date=draft.start_date,
        drift_window=s["drift_window_days"],
        decay=blocks["decay"],
        drift_min_rows=s["drift_min_rows"],
    )
    return head + "\n".join(lines) + "\n" + tail
