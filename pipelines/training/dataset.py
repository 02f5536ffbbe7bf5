"""Training sets: the validated partitions of a window, written deterministically and fingerprinted.

:func:`build_training_set` reads the validated partitions of a window ending
at ``end_ds``, keeps the last ``holdout_days`` of it as a holdout that
training never sees, and writes both as deterministic Parquet into the
window's training folder with a record beside them
(:mod:`pipelines.core.catalog`). The fingerprint is the hash DVC gives the two
data files as a folder (``md5`` of its sorted file list, suffixed ``.dir``), so
``dvc add`` or a DVC stage on the same data reports the same value.

A window too large for memory is read as a seeded sample
(``training.sample``, see :class:`~pipelines.core.config.SampleConfig`),
recorded with the training set (``sample``) and on the MLflow run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.errors import MissingInput
from pipelines.core.partitions import date_range, ds_str

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.core.config import ProjectConfig, SampleConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)


def dvc_dir_md5(files: dict[str, bytes]) -> str:
    """The hash DVC gives a directory holding ``files`` (relpath -> content)."""
    entries = sorted(
        ({"md5": hashlib.md5(data).hexdigest(), "relpath": rel} for rel, data in files.items()),  # noqa: S324 - DVC's hash
        key=lambda e: e["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"  # noqa: S324


def window(project: ProjectConfig, end_ds: str) -> dict[str, list[str]]:
    """The days of the training window ending at ``end_ds``, split into train and holdout."""
    end = dt.date.fromisoformat(ds_str(end_ds))
    start = end - dt.timedelta(days=project.training.window_days - 1)
    days = date_range(start, end)
    cut = len(days) - project.training.holdout_days
    return {"train": days[:cut], "holdout": days[cut:]}


def _read_days(
    storage: Storage, dataset: str, days: list[str], sample: SampleConfig
) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """The days' validated rows (a seeded sample when they exceed ``sample.max_rows``), the days missing, and
    the sample's record.

    Two passes over the days' files: their footers give the rows, hence the
    rate; then each file is read a row group at a time, keeping each row with
    that probability (a draw seeded by the seed, the day and the group: the
    same rows every time). Both passes read the version of each file seen
    first (a file re-validated in between raises
    :class:`~pipelines.core.errors.ConditionFailed`: rerun).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.core.storage import version_of

    found: dict[str, tuple[str, str, int]] = {}
    missing = []
    for ds in days:
        key = catalog.validated_file(dataset, ds)
        try:
            version = version_of(storage.info(key))
        except MissingInput:
            missing.append(ds)
            continue
        with storage.open_version(key, version) as fh:
            found[ds] = (key, version, pq.ParquetFile(fh).metadata.num_rows)
    total = sum(rows for _, _, rows in found.values())
    rate = 1.0 if total <= sample.max_rows else sample.max_rows / total
    frames = []
    for ds, (key, version, _rows) in found.items():
        with storage.open_version(key, version) as fh:
            pf = pq.ParquetFile(fh)
            if rate == 1.0:
                table = pf.read()
            else:
                day = dt.date.fromisoformat(ds).toordinal()
                pieces = []
                for g in range(pf.num_row_groups):
                    group = pf.read_row_group(g)
                    keep = np.random.default_rng([sample.seed, day, g]).random(group.num_rows) < rate
                    pieces.append(group.filter(pa.array(keep)))
                table = pa.concat_tables(pieces) if pieces else pf.schema_arrow.empty_table()
        frame = table.to_pandas()
        frame.insert(0, "ds", ds)
        frames.append(frame)
    record = {
        "rows_in_window": total,
        "rows": sum(len(f) for f in frames),
        "rate": round(rate, 9),
        "seed": sample.seed if rate < 1.0 else None,
        "method": "none" if rate == 1.0 else "bernoulli per row, seeded by (seed, day, row group)",
    }
    if not frames:
        return pd.DataFrame(), missing, record
    return pd.concat(frames, ignore_index=True), missing, record


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    # No pandas metadata, fixed options: identical rows give identical bytes.
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None),
        buf,
        compression="zstd",
        write_statistics=True,
    )
    return buf.getvalue()


def _read_window(
    storage: Storage, project: ProjectConfig, days: dict[str, list[str]], end_ds: str, key: list[str]
) -> tuple[dict[str, pd.DataFrame], list[str], dict[str, dict[str, Any]]]:
    """Each part of the window (train, holdout) in a stable row order, the days missing and how each was sampled."""
    parts = {}
    missing: list[str] = []
    sampled: dict[str, dict[str, Any]] = {}
    for part, part_days in days.items():
        frame, gone, sampled[part] = _read_days(storage, project.dataset.name, part_days, project.training.sample)
        missing += gone
        if sampled[part]["rate"] < 1.0:
            log.warning(
                "%s: the %s days of the window hold %d rows, over training.sample.max_rows: a seeded sample "
                "of %d rows (rate %.4f) is read",
                project.name,
                part,
                sampled[part]["rows_in_window"],
                sampled[part]["rows"],
                sampled[part]["rate"],
            )
        if frame.empty:
            raise MissingInput(
                f"{project.name}: no validated data for the {part} days {part_days[0]}..{part_days[-1]} "
                f"of the window ending {end_ds}"
            )
        parts[part] = frame.sort_values(["ds", *key], kind="stable").reset_index(drop=True)
    return parts, missing, sampled


def build_training_set(project: ProjectConfig, end_ds: str, *, storage: Storage | None = None) -> dict[str, Any]:
    """Build, write and fingerprint the training and holdout sets for a window.

    Days without a validated partition (halted, not landed) are skipped and
    listed in the training set's record.

    Raises:
        MissingInput: the train part or the holdout part of the window has no data.
    """
    from pipelines.core.contracts import contract_for
    from pipelines.core.storage import get_storage

    storage = storage or get_storage()
    end_ds = ds_str(end_ds)
    days = window(project, end_ds)
    contract = contract_for(project)
    parts, missing, sampled = _read_window(storage, project, days, end_ds, contract.primary_key or [])
    payloads = {
        catalog.TRAIN_FILE: _parquet_bytes(parts["train"]),
        catalog.HOLDOUT_FILE: _parquet_bytes(parts["holdout"]),
    }
    fingerprint = dvc_dir_md5(payloads)
    for name, data in payloads.items():
        storage.write_bytes(catalog.training_file(project.name, end_ds, name), data)
    # The window's folder holds the latest build for its end date; the gate needs the holdout a
    # version was trained with, so it also goes to a write-once key named by its content.
    holdout_md5 = hashlib.md5(payloads[catalog.HOLDOUT_FILE]).hexdigest()  # noqa: S324 - a content name
    snapshot = catalog.holdout_snapshot(project.name, holdout_md5)
    if not storage.exists(snapshot):
        storage.write_bytes(snapshot, payloads[catalog.HOLDOUT_FILE])
    record = {
        "model": project.name,
        "dataset": project.dataset.name,
        "end_ds": end_ds,
        # The days that actually hold data (a window may reach before the feed).
        "train_days": [parts["train"]["ds"].iloc[0], parts["train"]["ds"].iloc[-1]],
        "holdout_days": [parts["holdout"]["ds"].iloc[0], parts["holdout"]["ds"].iloc[-1]],
        "window": [days["train"][0], days["holdout"][-1]],
        "missing_days": missing,
        "train_rows": len(parts["train"]),
        "holdout_rows": len(parts["holdout"]),
        "sample": sampled,
        "fingerprint": fingerprint,
        "files": {n: hashlib.md5(d).hexdigest() for n, d in payloads.items()},  # noqa: S324
        "holdout_snapshot": storage.uri(snapshot),
        "contract": contract.id,
        "contract_version": contract.version,
        "uri": storage.uri(catalog.training_dir(project.name, end_ds)),
    }
    storage.write_json(catalog.training_set_record(project.name, end_ds), record)
    log.info(
        "%s training set for window ending %s: %d train rows (%s..%s), %d holdout rows (%s..%s), %d day(s) missing, "
        "fingerprint %s",
        project.name,
        end_ds,
        record["train_rows"],
        *record["train_days"],
        record["holdout_rows"],
        *record["holdout_days"],
        len(missing),
        fingerprint,
    )
    return {**record, "frames": parts}


def labelled(frame: pd.DataFrame, project: ProjectConfig) -> tuple[pd.DataFrame, pd.Series]:
    """Rows whose outcome is known (cancelled flights have none), and their target."""
    from pipelines.core.features import make_target

    y = make_target(frame, project)
    keep = y.notna()
    return frame.loc[keep].reset_index(drop=True), y.loc[keep].reset_index(drop=True)
