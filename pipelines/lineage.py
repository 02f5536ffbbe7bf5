"""Lineage of a scored partition: ``pipelines lineage --model M --ds D``.

It answers, from what storage and MLflow hold:

- the published scores: file, rows, checksum, publication, the plan;
- which model version scored them, chosen how, from which MLflow run;
- what that version was trained on: window, holdout, data fingerprint,
  contract version, training set;
- which gate decision promoted it, and from which previous champion;
- which validated partition was scored and its validation report.

It then cross-checks the chain: the manifest's run id is the version's, the
fingerprint is the version's, the training set on storage is still the one
the version was trained on (when it was trained on this storage root), and
the validated partition is still the one that was scored (same SHA-256). A partition re-validated since then shows
``consistent: false`` with the reason: rescore it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.errors import InvalidPartitionKey, MissingInput, PlanConflict
from pipelines.core.partitions import ds_str

if TYPE_CHECKING:
    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage


def lineage(project: ProjectConfig, ds: str, storage: Storage | None = None) -> dict[str, Any]:
    """The full chain behind ``scores/<model>/ds=D`` (raises MissingInput when it is not published)."""
    from pipelines.core import locks
    from pipelines.core.storage import get_storage
    from pipelines.core.tracking import CHAMPION, alias_version, client

    ds = ds_str(ds)
    storage = storage or get_storage()
    public = catalog.scores_manifest(project.name, ds)
    # Inside the partition's lock: the file and its manifest are read as one publication left them.
    with locks.scores_partition(storage, project.name, ds):
        if not storage.exists(public):
            withdrawn = catalog.scores_withdrawal(project.name, ds)
            if storage.exists(withdrawn):
                w = _json_object(storage, withdrawn)
                raise MissingInput(
                    f"{project.name} ds={ds}: scores withdrawn at {w.get('withdrawn_at')} because {w.get('why')} "
                    f"(were v{w.get('model_version')}, {w.get('rows')} rows, published {w.get('published_at')}; "
                    f"validation report {w.get('validation_report')}): score the day again"
                )
            raise MissingInput(f"{project.name} ds={ds} is not scored (no {storage.uri(public)})")
        m = _json_object(storage, public)
        required = ("model_version", "mlflow_run_id", "input", "output", "output_sha256")
        if not all(k in m for k in required) or not isinstance(m["input"], dict) or "key" not in m["input"]:
            raise PlanConflict(
                f"{project.name} ds={ds}: the scores manifest {storage.uri(public)} is damaged; score the day again"
            )
        published = _published_file(storage, project.name, ds)

    c = client()
    mv = c.get_model_version(project.name, m["model_version"])
    run = c.get_run(mv.run_id)
    rt = run.data.tags
    champion = alias_version(c, project.name, CHAMPION)

    report_at = catalog.validation_report(project.dataset.name, ds)
    report = storage.read_json(report_at)["summary"] if storage.exists(report_at) else {}
    training = _training_record(storage, project, rt)
    problems = _file_check(m, published) + _cross_check(storage, m, mv, training)
    lanes = day_lanes(storage, project, ds, m)
    if report:  # where the report is now (a report moved by migrate-layout still names its old key)
        report = {
            **report,
            "report": storage.uri(report_at),
            "report_html": storage.uri(catalog.validation_html(project.dataset.name, ds)),
        }
    chain = _chain(project, ds, storage.uri(public), m, mv, run, champion, report, training or {}, problems)
    return {**chain, "lanes": lanes}


def day_lanes(storage: Storage, project: ProjectConfig, ds: str, champion_manifest: dict[str, Any]) -> list[dict]:
    """Which versions scored the day: the champion's lane (what BI sees) and each shadow lane, with the
    published file of each."""
    lanes = [
        {
            "lane": "champion",
            "model_version": champion_manifest["model_version"],
            "bi": True,
            "path": champion_manifest["output"],
        },
    ]
    for lane in catalog.shadow_lanes(storage, project.name, ds):
        key = catalog.scores_manifest(lane, ds)
        try:
            m = storage.read_json(key) if storage.exists(key) else None
        except ValueError:
            m = None
        if isinstance(m, dict) and "model_version" in m:
            lanes.append(
                {"lane": "shadow", "model_version": str(m["model_version"]), "bi": False, "path": m.get("output")}
            )
    return lanes


def _training_record(storage: Storage, project: ProjectConfig, run_tags: dict[str, str]) -> dict[str, Any] | None:
    """The record of the training set a version's run names.

    ``{}`` when the version was trained on another storage root (nothing here
    to check), ``None`` when it was trained on this one but its record cannot
    be found (a malformed ``end_ds`` tag, or the record is gone).
    """
    if storage.key_of(run_tags.get("training_set_uri", "")) is None:
        return {}
    try:
        record = catalog.training_set_record(project.name, run_tags.get("end_ds") or "")
    except InvalidPartitionKey:
        return None
    return storage.read_json(record) if storage.exists(record) else None


def _json_object(storage: Storage, key: str) -> dict[str, Any]:
    """A JSON object we wrote; :class:`PlanConflict` (exit 7) when it is damaged."""
    try:
        value = storage.read_json(key)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise PlanConflict(f"{storage.uri(key)} is damaged (not a JSON object); score the day again")
    return value


def _published_file(storage: Storage, model: str, ds: str) -> dict[str, Any] | None:
    """The published file's SHA-256 and footer identity (``None``: no footer or unreadable), or ``None``."""
    from pipelines.core.storage import sha256_file
    from pipelines.scoring.publication import read_footer_identity

    key = catalog.scores_file(model, ds)
    if not storage.exists(key):
        return None
    with storage.local_copy(key) as path:
        try:
            footer = read_footer_identity(path)
        except Exception:  # noqa: BLE001 - not Parquet, or a footer that is not ours: the checksum tells
            footer = None
        return {"sha256": sha256_file(path), "footer": footer if isinstance(footer, dict) else None}


def _file_check(m: dict[str, Any], published: dict[str, Any] | None) -> list[str]:
    """Whether the file on storage is the one the manifest describes (checksum, then its own footer)."""
    if published is None:
        return [f"the scores file named by the manifest is gone ({m.get('output')})"]
    problems = []
    if published["sha256"] != m.get("output_sha256"):
        problems.append("the scores file is not the one its manifest describes (SHA-256 differs): rescore the day")
    footer = published["footer"]
    if footer is not None and (
        footer.get("model_version") != m.get("model_version")
        or footer.get("input_sha256") != m.get("input", {}).get("sha256")
    ):
        problems.append("the scores file's footer names another version or input than its manifest")
    return problems


def _cross_check(storage: Storage, m: dict[str, Any], mv: Any, training: dict[str, Any] | None) -> list[str]:
    """What breaks the chain: the manifest disagrees with the version, its training set was replaced since,
    or the scored input changed or went."""
    from pipelines.core.storage import sha256_file

    vt = mv.tags or {}
    problems = []
    if training is None:
        problems.append("the version's training set has no record on this storage root (run tags or storage changed)")
    elif training and training.get("fingerprint") != vt.get("data_fingerprint"):
        problems.append("the training set on storage is not the one the version was trained on (retrained since)")
    if m["mlflow_run_id"] != mv.run_id:
        problems.append(f"manifest run {m['mlflow_run_id']} is not version {mv.version}'s run {mv.run_id}")
    if m.get("training_fingerprint") != vt.get("data_fingerprint"):
        problems.append("the manifest's training fingerprint is not the version's")
    input_key = m["input"]["key"]
    if not storage.exists(input_key):
        problems.append(f"the scored validated partition is gone ({m['input']['uri']})")
    elif "sha256" in m["input"]:
        with storage.local_copy(input_key) as path:
            if sha256_file(path) != m["input"]["sha256"]:
                problems.append("the validated partition changed since it was scored (re-validated): rescore it")
    return problems


def _chain(
    project: ProjectConfig,
    ds: str,
    manifest_uri: str,
    m: dict[str, Any],
    mv: Any,
    run: Any,
    champion: Any,
    report: dict[str, Any],
    training: dict[str, Any],
    problems: list[str],
) -> dict[str, Any]:
    """The lineage document from what was read (pure)."""
    vt, rt = mv.tags or {}, run.data.tags
    return {
        "model": project.name,
        "ds": ds,
        "scores": {
            "uri": m["output"],
            "manifest": manifest_uri,
            "rows": m["rows"],
            "sha256": m["output_sha256"],
            "chunks": m["chunks"],
            "plan_id": m["plan_id"],
            "published_at": m["published_at"],
        },
        "model_version": {
            "name": project.name,
            "version": str(mv.version),
            "model_uri": f"models:/{project.name}/{mv.version}",
            "mlflow_run_id": mv.run_id,
            "mlflow_experiment_id": run.info.experiment_id,
            "choice": m.get("model_choice"),
            "pinned_at": m.get("pinned_at"),
            "aliases": sorted(mv.aliases or []),
            "champion_now": None if champion is None else str(champion.version),
            "trigger": rt.get("trigger"),
            "code_version": rt.get("code_version"),
            "config_hash": rt.get("config_hash"),
        },
        "training": {
            "window": vt.get("training_window"),
            "holdout_window": vt.get("holdout_window"),
            "data_fingerprint": vt.get("data_fingerprint"),
            "contract_version": vt.get("contract_version"),
            "training_set": rt.get("training_set_uri"),
            "train_rows": training.get("train_rows"),
            "holdout_rows": training.get("holdout_rows"),
        },
        "gate": {
            "decision": vt.get("gate_decision"),
            "failed": vt.get("gate_failed"),
            "champion_at_evaluation": vt.get("gate_champion_at_evaluation"),
            "evaluated_at": vt.get("gate_at"),
            "decision_uri": vt.get("gate_decision_uri"),
            "promoted_from": vt.get("promoted_from"),
            "promotion_reason": vt.get("promotion_reason"),
            "rolled_back": vt.get("rolled_back"),
        },
        "input": {
            "validated": m["input"]["uri"],
            "rows": m["input"]["rows"],
            "sha256": m["input"].get("sha256"),
            "contract_version": m.get("contract_version"),
            "validation_report": report.get("report"),
            "validation_html": report.get("report_html"),
            "validation_status": report.get("status"),
            "landed_rows": report.get("landed_rows"),
            "quarantined_rows": report.get("quarantined_rows"),
            "rules_failed": report.get("rules_failed"),
        },
        "consistent": not problems,
        "problems": problems,
    }


def summary_lines(r: dict[str, Any]) -> list[str]:
    """The human form of :func:`lineage`."""
    s, v, t, g, i = r["scores"], r["model_version"], r["training"], r["gate"], r["input"]
    now = "the champion now" if v["champion_now"] == v["version"] else f"champion now: v{v['champion_now']}"
    return [
        f"{r['model']} ds={r['ds']}: {s['rows']} rows in {s['uri']} (published {s['published_at']})",
        f"  scored by  v{v['version']} ({v['choice']}, pinned {v['pinned_at']}; {now}), "
        f"MLflow run {v['mlflow_run_id']}",
        f"  trained on {t['window']} (holdout {t['holdout_window']}), fingerprint {t['data_fingerprint']}, "
        f"contract {t['contract_version']}, trigger {v['trigger']}",
        f"  gate       {g['decision']} at {g['evaluated_at']} (previous champion {g['promoted_from'] or '-'}), "
        f"{g['decision_uri']}",
        f"  input      {i['validated']} ({i['rows']} rows, contract {i['contract_version']}), "
        f"validation {i['validation_status']}: {i['validation_report']}",
        *(
            f"  shadow     v{lane['model_version']} scored the day too: {lane['path']} (not in BI's table)"
            for lane in r.get("lanes", [])
            if not lane["bi"]
        ),
        "  consistent" if r["consistent"] else "  INCONSISTENT: " + "; ".join(r["problems"]),
    ]
