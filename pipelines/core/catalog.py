"""The catalog: every artifact the pipelines store, and the only place a storage key is built or parsed.

A step never writes a path: it asks the catalog for the key of an artifact
(``validated_file("flights", "2013-01-01")``) and hands it to the storage
adapter. Names and partition keys are validated here, so no key can carry a
separator, ``..`` or a scheme out of the storage root. As in a Kedro data
catalog, it also lists a zone's partitions and reads the one input every
stage shares (:func:`read_validated`), and it knows where an earlier version
kept what has moved since (:func:`legacy_moves`).

Two owners, two namespaces:

- **dataset-owned** artifacts (what a delivery became: landed files, validated
  rows, quarantine, the validation report) live under ``<zone>/<dataset>/``
  and ``reports/datasets/<dataset>/``;
- **model-owned** artifacts (training sets, drift checks, scoring checkpoints
  and scores) live under ``<zone>/<model>/`` and ``reports/models/<model>/``.

A dataset and a model may share a name: their reports never meet.
:data:`ARTIFACTS` lists every artifact with its key pattern; the README's
storage table is rendered from it (``python -m pipelines.core.catalog``) and a
test keeps the two equal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from pipelines.core.errors import ConfigError, InvalidPartitionKey, NoValidatedPartition
from pipelines.core.partitions import ds_str, parse_ds
from pipelines.core.storage import check_key

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.core.storage import Storage

#: The storage zones, one top-level folder each.
ZONES = ("landing", "validated", "quarantine", "reports", "training", "checkpoints", "scores", "shadow")

#: A dataset or model name: a lower-case identifier, so it is safe in every key and DAG id.
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_PLAN_RE = re.compile(r"[0-9a-f]{16}")
#: A registered model version number, as MLflow numbers them.
VERSION_RE = re.compile(r"[1-9][0-9]{0,9}")
_VERSION = "v="
_PARTITION = "ds="

# File names inside a partition folder.
VALIDATED_FILE = "part-00000.parquet"
QUARANTINE_ROWS_FILE = "rows.parquet"
QUARANTINE_FILES_DIR = "files"
QUARANTINE_INDEX_FILE = "_files.json"
VALIDATION_REPORT_FILE = "validation.json"
VALIDATION_HTML_FILE = "validation.html"
TRAIN_FILE = "train.parquet"
HOLDOUT_FILE = "holdout.parquet"
TRAINING_SET_FILE = "_training_set.json"
DRIFT_SUMMARY_FILE = "drift.json"
DRIFT_HTML_FILES = {"features": "drift.html", "scores": "drift_scores.html"}
SCORING_PLAN_FILE = "plan.json"
SCORES_FILE = "part-00000.parquet"
SCORES_MANIFEST_FILE = "_manifest.json"
SCORES_WITHDRAWN_FILE = "_withdrawn.json"
LIVE_FILE = "live.json"
LIVE_DECISION_FILE = "live_decision.json"
LIVE_HTML_FILE = "live.html"

#: The key of a published scores file's identity in its Parquet footer (what scored it, from which input).
SCORES_FOOTER_KEY = b"pipelines.scores"


def scores_footer(metadata: Any) -> dict[str, Any] | None:
    """The identity a published scores file carries in its footer (``metadata``: pyarrow's ``FileMetaData``),
    or ``None`` for a file from before it did."""
    import json

    raw = (metadata.metadata or {}).get(SCORES_FOOTER_KEY)
    return json.loads(raw) if raw else None


# Artifacts logged with each model version in MLflow (paths inside its run).
MODEL_ARTIFACT = "model"
REFERENCE_DIR = "reference"
DRIFT_REFERENCE_FILE = "drift_reference.parquet"
HOLDOUT_SCORES_FILE = "holdout_scores.parquet"
DRIFT_REFERENCE = f"{REFERENCE_DIR}/{DRIFT_REFERENCE_FILE}"
HOLDOUT_SCORES_REFERENCE = f"{REFERENCE_DIR}/{HOLDOUT_SCORES_FILE}"
REFERENCE_PROFILE = f"{REFERENCE_DIR}/profile.json"
TRAINING_SET_RECORD = "training_set.json"
GATE_DECISION = "gate/decision.json"
GATE_DECISION_MD = "gate/decision.md"
LIVE_GATE_DECISION = "gate/live_decision.json"
LIVE_GATE_DECISION_MD = "gate/live_decision.md"
EVALUATION = "evaluation.json"
MODEL_CARD_MD = "card/model_card.md"
MODEL_CARD_HTML = "card/model_card.html"


def _file_name(value: str) -> str:
    """A file's name inside a partition folder (``sub/x.csv`` allowed): not empty, not a folder."""
    if not isinstance(value, str) or not value or value.endswith("/"):
        raise ConfigError(f"invalid file name {value!r}")
    return value


def _name(value: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ConfigError(f"invalid dataset or model name {value!r}")
    return value


def _table(zone: str, name: str, namespace: str | None = None) -> str:
    """``<zone>[/<namespace>]/<name>``: the folder of one dataset's or model's artifacts in a zone."""
    if zone not in ZONES:
        raise ConfigError(f"unknown storage zone {zone!r}")
    return check_key("/".join([zone, *([namespace] if namespace else []), _name(name)]))


def _key(zone: str, name: str, ds: str, *parts: str, namespace: str | None = None) -> str:
    """A partition's folder, or a file in it: the partition key is always validated as a date."""
    return check_key("/".join([_table(zone, name, namespace), f"{_PARTITION}{ds_str(ds)}", *parts]))


# ---- dataset-owned


def landing_table(dataset: str) -> str:
    """``landing/<dataset>``: every delivery of a dataset, one folder per partition."""
    return _table("landing", dataset)


def landing_dir(dataset: str, ds: str) -> str:
    """``landing/<dataset>/ds=D``: a day's delivery, as upstream wrote it (never modified)."""
    return _key("landing", dataset, ds)


def landing_file(dataset: str, ds: str, name: str) -> str:
    """One delivered file, or the ready marker upstream writes last, by its name inside the delivery."""
    return check_key(f"{landing_dir(dataset, ds)}/{_file_name(name)}")


class Landed(NamedTuple):
    """A delivered data file: its key, and its name inside the delivery (``EWR.csv``, ``sub/x.csv``)."""

    key: str
    name: str


def landed_files(storage: Storage, dataset: str, ds: str) -> list[Landed]:
    """The data files of a delivery, sorted.

    A path segment starting with ``.`` or ``_`` is metadata or in-flight
    output by Hadoop/Hive convention (``_SUCCESS``, ``_temporary/``,
    ``.crc``), and an S3 "folder" marker is not a file: all are skipped.
    """
    return landed_among(dataset, ds, storage.list(landing_dir(dataset, ds)))


def landed_among(dataset: str, ds: str, keys: list[str]) -> list[Landed]:
    """The data files among keys listed under a delivery's folder (see :func:`landed_files`)."""
    folder = landing_dir(dataset, ds)
    out = []
    for key in sorted(keys):
        if not key.startswith(folder + "/"):
            continue
        name = key[len(folder) + 1 :]
        if not name or key.endswith("/") or any(seg.startswith((".", "_")) for seg in name.split("/")):
            continue
        out.append(Landed(key, name))
    return out


def validated_table(dataset: str) -> str:
    """``validated/<dataset>``: the dataset's validated table (Hive-partitioned by ``ds``)."""
    return _table("validated", dataset)


def validated_dir(dataset: str, ds: str) -> str:
    return _key("validated", dataset, ds)


def validated_file(dataset: str, ds: str) -> str:
    """A day's rows that passed the contract, typed, as one Parquet file."""
    return _key("validated", dataset, ds, VALIDATED_FILE)


def quarantine_dir(dataset: str, ds: str) -> str:
    return _key("quarantine", dataset, ds)


def quarantine_rows(dataset: str, ds: str) -> str:
    """Rejected rows, every delivered column as text, with ``_rule_ids``, ``_reasons`` and their source."""
    return _key("quarantine", dataset, ds, QUARANTINE_ROWS_FILE)


def quarantine_files_dir(dataset: str, ds: str) -> str:
    return _key("quarantine", dataset, ds, QUARANTINE_FILES_DIR)


def quarantine_file(dataset: str, ds: str, name: str) -> str:
    """A byte copy of an unreadable delivered file, under its name inside the delivery."""
    return check_key(f"{quarantine_files_dir(dataset, ds)}/{_file_name(name)}")


def quarantine_index(dataset: str, ds: str) -> str:
    """Which files were quarantined whole, and why."""
    return _key("quarantine", dataset, ds, QUARANTINE_INDEX_FILE)


def validation_reports(dataset: str) -> str:
    """``reports/datasets/<dataset>``: the dataset's validation reports, one folder per partition."""
    return _table("reports", dataset, namespace="datasets")


def validation_report(dataset: str, ds: str) -> str:
    """The validation report (JSON): its ``summary`` says published or halted, and every rule's counts."""
    return _key("reports", dataset, ds, VALIDATION_REPORT_FILE, namespace="datasets")


def validation_html(dataset: str, ds: str) -> str:
    return _key("reports", dataset, ds, VALIDATION_HTML_FILE, namespace="datasets")


# ---- model-owned


def training_dir(model: str, end_ds: str) -> str:
    """``training/<model>/ds=<end>``: the training set of the window ending at ``end_ds`` (DVC hashes it)."""
    return _key("training", model, end_ds)


def training_file(model: str, end_ds: str, name: str) -> str:
    """The training rows (:data:`TRAIN_FILE`) or the holdout (:data:`HOLDOUT_FILE`) of a window."""
    if name not in (TRAIN_FILE, HOLDOUT_FILE):
        raise ConfigError(f"unknown training-set file {name!r}")
    return _key("training", model, end_ds, name)


def training_set_record(model: str, end_ds: str) -> str:
    """What a training set holds: days, rows, fingerprint, contract version."""
    return _key("training", model, end_ds, TRAINING_SET_FILE)


_MD5_RE = re.compile(r"[0-9a-f]{32}")


def holdout_snapshot(model: str, md5: str) -> str:
    """``training/<model>/holdouts/<md5>.parquet``: a holdout as a version was trained with it, named by its MD5.

    Written once and never replaced (same name, same bytes): the gate reads a
    candidate's holdout here, whatever later trainings wrote to the window's folder.
    """
    if not isinstance(md5, str) or not _MD5_RE.fullmatch(md5):
        raise ConfigError(f"invalid holdout digest {md5!r}")
    return check_key(f"{_table('training', model)}/holdouts/{md5}.parquet")


def drift_reports(model: str) -> str:
    """``reports/models/<model>``: the model's drift checks (the drift asset points here)."""
    return _table("reports", model, namespace="models")


def drift_summary(model: str, ds: str) -> str:
    """A drift check's summary and the policy's decision (JSON)."""
    return _key("reports", model, ds, DRIFT_SUMMARY_FILE, namespace="models")


def drift_html(model: str, ds: str, part: str) -> str:
    """Evidently's HTML report of a check: ``features`` or ``scores`` (the score and the label)."""
    if part not in DRIFT_HTML_FILES:
        raise ConfigError(f"unknown drift report {part!r} (one of {sorted(DRIFT_HTML_FILES)})")
    return _key("reports", model, ds, DRIFT_HTML_FILES[part], namespace="models")


def validation_shards(dataset: str, ds: str) -> str:
    """A large day's validation work in progress: each shard task's spilled batches and result (removed once the
    day is decided)."""
    return _key("checkpoints", dataset, ds, "validation", namespace="datasets")


def shard_delivery_dir(dataset: str, ds: str, delivery_id: str, *parts: str) -> str:
    """The shard results of one delivery of a partition (or a key in that folder)."""
    return _key("checkpoints", dataset, ds, "validation", _plan_id(delivery_id), *parts, namespace="datasets")


def shard_deliveries(storage: Storage, dataset: str, ds: str) -> dict[str, int]:
    """``{delivery id: newest modification (ns)}`` of the shard results kept for a partition."""
    folder = validation_shards(dataset, ds)
    newest: dict[str, int] = {}
    for info in storage.list_info(folder):
        ident = info.key[len(folder) + 1 :].split("/", 1)[0]
        if _PLAN_RE.fullmatch(ident):
            newest[ident] = max(newest.get(ident, 0), info.modified_ns)
    return newest


def shard_result(dataset: str, ds: str, delivery_id: str, index: int) -> str:
    """A shard's result (its files' counts, rule counts, GX results, spilled batches): the shard is done when it
    exists."""
    return shard_delivery_dir(dataset, ds, delivery_id, f"shard-{int(index):05d}.json")


def shard_batch(dataset: str, ds: str, delivery_id: str, index: int, attempt: str, batch: int) -> str:
    """One spilled batch of a shard, under the attempt that wrote it (a retry never overwrites a result's files)."""
    shard, name = f"shard-{int(index):05d}", f"batch-{int(batch):06d}.parquet"
    return shard_delivery_dir(dataset, ds, delivery_id, shard, _plan_id(attempt), name)


@dataclass(frozen=True)
class Lane:
    """One scoring lane of a model: the champion's (``shadow`` is ``None``), whose scores BI reads, or a shadow
    version's, scored beside it into a zone BI's table does not include.

    Every scoring artifact (plan, chunks, run records, published file, manifest, withdrawal) is keyed by
    its lane: a shadow lane never shares a key, a plan or a lock with the champion's.
    """

    model: str
    shadow: str | None = None

    def __post_init__(self) -> None:
        _name(self.model)
        if self.shadow is not None:
            object.__setattr__(self, "shadow", version_number(self.shadow))  # "03", 3 and " 3" are lane "3"

    @property
    def label(self) -> str:
        """``champion`` or ``shadow v<N>``, for messages."""
        return "champion" if self.shadow is None else f"shadow v{self.shadow}"

    def __str__(self) -> str:
        return self.model if self.shadow is None else f"{self.model} (shadow v{self.shadow})"


def version_number(value: Any) -> str:
    """A registered version number as text (``"3"``), checked: it becomes a key segment and a lock name."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if text.isascii() and text.isdigit() and len(text) <= 10:
        text = str(int(text))  # "03" is version 3, as the registry numbers it
    if not VERSION_RE.fullmatch(text):
        raise ConfigError(f"invalid model version {value!r} (a registered version number)")
    return text


def as_lane(model: str | Lane) -> Lane:
    """A model name is its champion's lane."""
    return model if isinstance(model, Lane) else Lane(model)


def _lane_key(zone: str, model: str | Lane, ds: str, *parts: str) -> str:
    """A scoring artifact's key: ``<zone>/<model>/ds=D/...`` for the champion's lane; for a shadow version's,
    ``checkpoints/<model>/v=<N>/ds=D/...`` and, for its published scores, ``shadow/<model>/v=<N>/ds=D/...``
    (Hive-partitioned by version and day, outside BI's ``scores/`` table)."""
    lane = as_lane(model)
    if lane.shadow is None:
        return _key(zone, lane.model, ds, *parts)
    top = "shadow" if zone == "scores" else zone
    return check_key(
        "/".join([_table(top, lane.model), f"{_VERSION}{lane.shadow}", f"{_PARTITION}{ds_str(ds)}", *parts])
    )


def checkpoint_dir(model: str | Lane, ds: str) -> str:
    return _lane_key("checkpoints", model, ds)


def scoring_plan(model: str | Lane, ds: str) -> str:
    """The scoring run's plan: pinned version, input identity, chunks, status (one per partition)."""
    return _lane_key("checkpoints", model, ds, SCORING_PLAN_FILE)


def scoring_run(model: str | Lane, ds: str, run_key: str) -> str:
    """What one Airflow run attempt published for the partition (its retries return it): named by a hash of
    the run's key, which holds characters no key may (``:``, ``+``)."""
    import hashlib

    return _lane_key("checkpoints", model, ds, "runs", hashlib.sha256(run_key.encode()).hexdigest()[:32] + ".json")


def _plan_id(plan_id: str) -> str:
    if not isinstance(plan_id, str) or not _PLAN_RE.fullmatch(plan_id):
        raise ConfigError(f"invalid scoring plan id {plan_id!r}")
    return plan_id


def plan_dir(model: str | Lane, ds: str, plan_id: str) -> str:
    """A plan's committed chunks and their markers."""
    return _lane_key("checkpoints", model, ds, _plan_id(plan_id))


def chunk_data(model: str | Lane, ds: str, plan_id: str, index: int) -> str:
    """A scored chunk (LZ4 Arrow IPC)."""
    return _lane_key("checkpoints", model, ds, _plan_id(plan_id), f"chunk-{int(index):05d}.arrow")


def chunk_marker(model: str | Lane, ds: str, plan_id: str, index: int) -> str:
    """A chunk's commit marker (rows, SHA-256, who scored it): the chunk is committed when it exists."""
    return _lane_key("checkpoints", model, ds, _plan_id(plan_id), f"chunk-{int(index):05d}.json")


def committed_markers(storage: Storage, model: str | Lane, ds: str, plan_id: str) -> dict[int, str]:
    """``{index: marker key}`` of a plan's commit markers."""
    folder = plan_dir(model, ds, plan_id)
    out = {}
    for key in storage.list(folder):
        match = re.fullmatch(r"chunk-(\d{5})\.json", key[len(folder) + 1 :])
        if match:
            out[int(match.group(1))] = key
    return out


def plan_ids(storage: Storage, model: str | Lane, ds: str) -> list[str]:
    """The plan folders present under a partition's checkpoint (the current plan's and stale ones)."""
    folder = checkpoint_dir(model, ds)
    found = set()
    for key in storage.list(folder):
        head, sep, _rest = key[len(folder) + 1 :].partition("/")
        if sep and _PLAN_RE.fullmatch(head):
            found.add(head)
    return sorted(found)


def scores_table(model: str) -> str:
    """``scores/<model>``: the published scores, Hive-partitioned by ``ds`` (BI tools read this)."""
    return _table("scores", model)


def shadow_table(model: str) -> str:
    """``shadow/<model>``: the shadow versions' scores, Hive-partitioned by ``v`` (version) and ``ds``."""
    return _table("shadow", model)


def shadow_glob(model: str) -> str:
    """A glob over every shadow version's published Parquet files of a model."""
    return f"{shadow_table(model)}/{_VERSION}*/{_PARTITION}*/*.parquet"


def scores_file(model: str | Lane, ds: str) -> str:
    """A day's published scores: one Parquet file, replaced whole on rescoring."""
    return _lane_key("scores", model, ds, SCORES_FILE)


def scores_manifest(model: str | Lane, ds: str) -> str:
    """What a published scores file holds and where it came from (version, input, checksums)."""
    return _lane_key("scores", model, ds, SCORES_MANIFEST_FILE)


def scores_withdrawal(model: str | Lane, ds: str) -> str:
    """Why a day's scores were withdrawn (its data halted or was re-validated with other content)."""
    return _lane_key("scores", model, ds, SCORES_WITHDRAWN_FILE)


def shadow_lanes(storage: Storage, model: str, ds: str | None = None) -> list[Lane]:
    """The shadow lanes of a model with published scores (of day ``ds``, or of any day), by version."""
    folder = shadow_table(model)
    found = set()
    for key in storage.list(folder):
        parts = key[len(folder) + 1 :].split("/")
        if len(parts) != 3 or not parts[0].startswith(_VERSION) or parts[2] not in (SCORES_FILE, SCORES_MANIFEST_FILE):
            continue
        version, day = parts[0][len(_VERSION) :], parts[1][len(_PARTITION) :]
        if VERSION_RE.fullmatch(version) and parts[1].startswith(_PARTITION) and (ds is None or day == ds_str(ds)):
            found.add(int(version))
    return [Lane(model, str(v)) for v in sorted(found)]


def shadow_partitions(storage: Storage, lane: Lane) -> list[str]:
    """Every day a shadow lane has published, sorted."""
    return _partitions(
        storage, f"{shadow_table(lane.model)}/{_VERSION}{version_number(lane.shadow)}", SCORES_MANIFEST_FILE
    )


def live_record(model: str, ds: str) -> str:
    """A labelled day's live evidence: each version that scored it (champion and shadows), its metrics on the
    same rows, and its slices."""
    return _key("reports", model, ds, LIVE_FILE, namespace="models")


def live_decision(model: str, ds: str) -> str:
    """The live gate's decisions at the end of day ``ds``: each shadow's window, figures and verdict."""
    return _key("reports", model, ds, LIVE_DECISION_FILE, namespace="models")


def live_html(model: str, ds: str) -> str:
    """The live evidence for people: each shadow against the champion over time, with intervals."""
    return _key("reports", model, ds, LIVE_HTML_FILE, namespace="models")


def live_decisions(storage: Storage, model: str) -> list[str]:
    """Every day the live gate judged for a model, sorted."""
    return _partitions(storage, drift_reports(model), LIVE_DECISION_FILE)


# ---- partitions


def parquet_glob(table: str) -> str:
    """A glob over every partition's Parquet files of a Hive-partitioned table (for DuckDB and friends)."""
    return f"{check_key(table)}/{_PARTITION}*/*.parquet"


def _partitions(storage: Storage, folder: str, file_name: str) -> list[str]:
    """Partition keys ``D`` for which ``<folder>/ds=D/<file_name>`` exists, sorted; foreign names ignored."""
    found = set()
    for key in storage.list(folder):
        part, sep, rest = key[len(folder) + 1 :].partition("/")
        if not sep or rest != file_name or not part.startswith(_PARTITION):
            continue
        try:
            found.add(parse_ds(part[len(_PARTITION) :]).isoformat())
        except InvalidPartitionKey:
            continue
    return sorted(found)


def validated_partitions(storage: Storage, dataset: str) -> list[str]:
    """Every validated partition of a dataset, sorted."""
    return _partitions(storage, validated_table(dataset), VALIDATED_FILE)


def drift_checks(storage: Storage, model: str) -> list[str]:
    """Every partition with a stored drift check of a model, sorted."""
    return _partitions(storage, drift_reports(model), DRIFT_SUMMARY_FILE)


def read_validated(storage: Storage, dataset: str, ds: str) -> pd.DataFrame:
    """One validated partition as a DataFrame.

    Raises:
        NoValidatedPartition: the day was never validated, or its contract halted it.
    """
    key = validated_file(dataset, ds)
    if not storage.exists(key):
        raise NoValidatedPartition(dataset, ds_str(ds))
    return storage.read_parquet(key).to_pandas()


# ---- the layout before the catalog


def legacy_moves(storage: Storage) -> list[tuple[str, str]]:
    """``(old key, new key)`` of every artifact an earlier version left at a key that has moved since.

    Before the catalog, validation and drift reports shared ``reports/<name>/``
    (a dataset and a model of one name collided), the training set's record
    was ``_manifest.json`` and the scoring plan ``manifest.json``. Old keys are
    four segments deep (``<zone>/<name>/ds=D/<file>``); the new ones under
    ``reports/`` are five, so the two never mix. Foreign names are ignored.
    """
    report_namespace = {VALIDATION_REPORT_FILE: "datasets", VALIDATION_HTML_FILE: "datasets"}
    report_namespace |= dict.fromkeys((DRIFT_SUMMARY_FILE, *DRIFT_HTML_FILES.values()), "models")
    renamed = {("training", "_manifest.json"): TRAINING_SET_FILE, ("checkpoints", "manifest.json"): SCORING_PLAN_FILE}
    moves = []
    for zone in ("reports", "training", "checkpoints"):
        for key in storage.list(zone):
            parts = key.split("/")
            if len(parts) != 4 or not parts[2].startswith(_PARTITION):
                continue
            _, name, folder, file = parts
            try:
                ds = parse_ds(folder[len(_PARTITION) :]).isoformat()
                if zone == "reports" and file in report_namespace:
                    moves.append((key, _key(zone, name, ds, file, namespace=report_namespace[file])))
                elif (zone, file) in renamed:
                    moves.append((key, _key(zone, name, ds, renamed[zone, file])))
            except (ConfigError, InvalidPartitionKey):
                continue
    return moves


# ---- the table of artifacts

#: The day that stands for "any partition" when a key is shown as a pattern.
_ANY_DAY = "2000-01-01"


def pattern(key_of: Callable[..., str], name: str, *rest: Any) -> str:
    """``key_of(name, <any day>, *rest)`` with the partition shown as ``ds=…``: a key pattern for docs and logs."""
    return key_of(name, _ANY_DAY, *rest).replace(f"{_PARTITION}{_ANY_DAY}", f"{_PARTITION}…")


@dataclass(frozen=True)
class Artifact:
    """One stored artifact: who owns it, where it lives, what it is."""

    owner: str
    key: str
    what: str


ARTIFACTS: tuple[Artifact, ...] = (
    Artifact(
        "dataset", landing_dir("dataset", "2013-01-01") + "/...", "as delivered, plus the ready marker; never modified"
    ),
    Artifact("dataset", validated_file("dataset", "2013-01-01"), "rows that passed the contract, typed"),
    Artifact(
        "dataset",
        quarantine_rows("dataset", "2013-01-01"),
        "rejected rows as delivered text + _rule_ids, _reasons, _source_file, _source_row, _raw_line",
    ),
    Artifact("dataset", quarantine_file("dataset", "2013-01-01", "name"), "unreadable files, byte copies"),
    Artifact("dataset", quarantine_index("dataset", "2013-01-01"), "which files were quarantined whole, and why"),
    Artifact(
        "dataset", validation_report("dataset", "2013-01-01"), "validation report: summary, every rule, GX result"
    ),
    Artifact("dataset", validation_html("dataset", "2013-01-01"), "the same, for people"),
    Artifact(
        "dataset",
        shard_result("dataset", "2013-01-01", "0" * 16, 0),
        "a large day's validation shard: counts, GX results, spilled batches (until the day is decided)",
    ),
    Artifact("model", training_file("model", "2013-01-01", TRAIN_FILE), "training rows of the window ending at ds"),
    Artifact("model", training_file("model", "2013-01-01", HOLDOUT_FILE), "its holdout (the last holdout_days)"),
    Artifact("model", training_set_record("model", "2013-01-01"), "days, rows, fingerprint, contract version"),
    Artifact(
        "model",
        holdout_snapshot("model", "f" * 32),
        "each version's holdout as trained with, by MD5 (the gate reads it)",
    ),
    Artifact("model", drift_summary("model", "2013-01-01"), "drift check: measures, signal, the policy's decision"),
    Artifact("model", drift_html("model", "2013-01-01", "features"), "Evidently's report on the features"),
    Artifact("model", drift_html("model", "2013-01-01", "scores"), "Evidently's report on the score and label"),
    Artifact("model", live_record("model", "2013-01-01"), "live evidence: each version that scored the day, same rows"),
    Artifact("model", live_decision("model", "2013-01-01"), "the live gate: each shadow's window, figures, verdict"),
    Artifact("model", live_html("model", "2013-01-01"), "the same, for people: champion vs each shadow over time"),
    Artifact(
        "model", scoring_plan("model", "2013-01-01"), "scoring plan: pinned version, input identity, chunks, status"
    ),
    Artifact("model", chunk_data("model", "2013-01-01", "0" * 16, 0), "a committed chunk (while the run lasts)"),
    Artifact("model", chunk_marker("model", "2013-01-01", "0" * 16, 0), "its commit marker: rows, SHA-256, worker"),
    Artifact("model", scores_file("model", "2013-01-01"), "published scores, replaced whole"),
    Artifact("model", scores_manifest("model", "2013-01-01"), "what the file holds and where it came from"),
    Artifact(
        "model",
        scores_withdrawal("model", "2013-01-01"),
        "scores withdrawn: their data halted or was re-validated with other content",
    ),
    Artifact(
        "model",
        scoring_plan(Lane("model", "1"), "2013-01-01"),
        "a shadow version's scoring plan (its chunks and runs beside it, as the champion's)",
    ),
    Artifact(
        "model",
        scores_file(Lane("model", "1"), "2013-01-01"),
        "a shadow version's published scores, never in BI's table (_manifest.json, _withdrawn.json beside it)",
    ),
)


#: What each model version carries in MLflow (paths inside its run's artifacts).
MODEL_VERSION_ARTIFACTS: tuple[tuple[str, str], ...] = (
    (MODEL_ARTIFACT, "the fitted pipeline, preprocessing included (the registered model)"),
    (TRAINING_SET_RECORD, "the training set's record"),
    (REFERENCE_PROFILE, "feature distributions of the training rows"),
    (DRIFT_REFERENCE, "a seeded sample of the training features and labels (drift's reference)"),
    (HOLDOUT_SCORES_REFERENCE, "the holdout's out-of-sample scores and labels"),
    (GATE_DECISION, "the gate's decision, every criterion and its figures"),
    (GATE_DECISION_MD, "the same, for people"),
    (LIVE_GATE_DECISION, "a shadow's latest live-gate decision: window, figures, verdict"),
    (LIVE_GATE_DECISION_MD, "the same, for people"),
    (EVALUATION, "holdout metrics with bootstrap intervals, slice metrics, feature importance"),
    (MODEL_CARD_MD, "the version's model card, regenerated when its status changes"),
    (MODEL_CARD_HTML, "the same card as a page"),
)


def markdown_table() -> str:
    """The storage tables the README shows, with placeholders for names and dates."""
    lines = ["| owner | key | what |", "|---|---|---|"]
    for a in ARTIFACTS:
        key = (
            a.key.replace("/dataset/", "/<dataset>/")
            .replace("/model/", "/<model>/")
            .replace("/v=1/", "/v=<N>/")
            .replace("ds=2013-01-01", "ds=YYYY-MM-DD")
            .replace("f" * 32, "<md5>")
            .replace("/validation/" + "0" * 16, "/validation/<delivery>")
            .replace("0" * 16, "<plan>")
            .replace("00000.arrow", "<i>.arrow")
            .replace("00000.json", "<i>.json")
            .replace("/files/name", "/files/<name>")
        )
        lines.append(f"| {a.owner} | `{key}` | {a.what} |")
    lines += ["", "Stored with each model version in MLflow (its run's artifacts):", ""]
    lines += ["| artifact | what |", "|---|---|"]
    lines += [f"| `{path}` | {what} |" for path, what in MODEL_VERSION_ARTIFACTS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table(), end="")
