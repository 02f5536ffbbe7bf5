"""Training sets and challenger training, tracked in MLflow.

``build_training_set`` reads the validated partitions of a window ending at
``end_ds``, keeps the last ``holdout_days`` of it as a holdout that training
never sees, and writes both as deterministic Parquet under
``training/<model>/ds=<end_ds>/`` with a manifest. The fingerprint is the hash
DVC gives that folder (``md5`` of its sorted file list, suffixed ``.dir``), so
``dvc add`` or a DVC stage on the same data reports the same value.

``train_challenger`` fits the project's pipeline (features + encoding +
estimator, one object), evaluates it on the holdout, and logs everything to
one MLflow run: params, metrics, the training and holdout sets as dataset
inputs with their digests and sources, tags for window, fingerprint, contract
version, code version, trigger and evidence, the reference profile for drift,
and the model itself, registered as a new version of the project's model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.errors import ConfigError, MissingInput, NoValidatedPartition
from pipelines.core.features import PREDICTION_COLUMN, TARGET_COLUMN
from pipelines.core.partitions import date_range, ds_str
from pipelines.core.settings import PROJECT_ROOT

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)

TRIGGERS = ("manual", "schedule", "drift")


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


def _read_days(storage: Storage, dataset: str, days: list[str]) -> tuple[pd.DataFrame, list[str]]:
    import pandas as pd

    frames, missing = [], []
    for ds in days:
        try:
            frame = catalog.read_validated(storage, dataset, ds)
        except NoValidatedPartition:
            missing.append(ds)
            continue
        frame.insert(0, "ds", ds)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(), missing
    return pd.concat(frames, ignore_index=True), missing


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


def build_training_set(project: ProjectConfig, end_ds: str, *, storage: Storage | None = None) -> dict[str, Any]:
    """Build, write and fingerprint the training and holdout sets for a window.

    Days without a validated partition (halted, not landed) are skipped and
    listed in the manifest.

    Raises:
        MissingInput: the train part or the holdout part of the window has no data.
    """
    from pipelines.core.contracts import contract_for
    from pipelines.core.storage import get_storage

    storage = storage or get_storage()
    end_ds = ds_str(end_ds)
    days = window(project, end_ds)
    contract = contract_for(project)
    key = contract.primary_key or []
    parts = {}
    missing: list[str] = []
    for part, part_days in days.items():
        frame, gone = _read_days(storage, project.dataset.name, part_days)
        missing += gone
        if frame.empty:
            raise MissingInput(
                f"{project.name}: no validated data for the {part} days {part_days[0]}..{part_days[-1]} "
                f"of the window ending {end_ds}"
            )
        parts[part] = frame.sort_values(["ds", *key], kind="stable").reset_index(drop=True)
    payloads = {
        catalog.TRAIN_FILE: _parquet_bytes(parts["train"]),
        catalog.HOLDOUT_FILE: _parquet_bytes(parts["holdout"]),
    }
    fingerprint = dvc_dir_md5(payloads)
    for name, data in payloads.items():
        storage.write_bytes(catalog.training_file(project.name, end_ds, name), data)
    manifest = {
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
        "fingerprint": fingerprint,
        "files": {n: hashlib.md5(d).hexdigest() for n, d in payloads.items()},  # noqa: S324
        "contract": contract.id,
        "contract_version": contract.version,
        "uri": storage.uri(catalog.training_dir(project.name, end_ds)),
    }
    storage.write_json(catalog.training_set_record(project.name, end_ds), manifest)
    log.info(
        "%s training set for window ending %s: %d train rows (%s..%s), %d holdout rows (%s..%s), %d day(s) missing, "
        "fingerprint %s",
        project.name,
        end_ds,
        manifest["train_rows"],
        *manifest["train_days"],
        manifest["holdout_rows"],
        *manifest["holdout_days"],
        len(missing),
        fingerprint,
    )
    return {**manifest, "frames": parts}


def code_version() -> str:
    """Git commit of the code (``PIPELINES_CODE_VERSION`` wins), or ``unknown``."""
    if os.environ.get("PIPELINES_CODE_VERSION"):
        return os.environ["PIPELINES_CODE_VERSION"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def config_hash(project: ProjectConfig) -> str:
    """Hash of everything in the config that shapes a trained model (features, target, estimator, window)."""
    shaping = project.model_dump(include={"dataset", "target", "features", "model", "training", "metrics"}, mode="json")
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def labelled(frame: pd.DataFrame, project: ProjectConfig) -> tuple[pd.DataFrame, pd.Series]:
    """Rows whose outcome is known (cancelled flights have none), and their target."""
    from pipelines.core.features import make_target

    y = make_target(frame, project)
    keep = y.notna()
    return frame.loc[keep].reset_index(drop=True), y.loc[keep].reset_index(drop=True)


def reference_profile(features: pd.DataFrame, spec: Any, bins: int = 20, top: int = 50) -> dict[str, Any]:
    """Feature distributions of the training data, stored with the model for drift checks."""
    import numpy as np

    profile: dict[str, Any] = {"rows": len(features), "numeric": {}, "categorical": {}}
    for col in spec.numeric_out:
        v = features[col].to_numpy(dtype="float64", na_value=np.nan)
        ok = v[~np.isnan(v)]
        if len(ok):
            edges = np.unique(np.quantile(ok, np.linspace(0, 1, bins + 1)))
            counts, _ = np.histogram(ok, bins=edges) if len(edges) > 1 else (np.array([len(ok)]), None)
        else:
            edges, counts = np.array([]), np.array([])
        profile["numeric"][col] = {
            "null_share": float(np.isnan(v).mean()) if len(v) else 0.0,
            "mean": float(ok.mean()) if len(ok) else None,
            "std": float(ok.std()) if len(ok) else None,
            "quantiles": {str(q): float(np.quantile(ok, q)) for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)}
            if len(ok)
            else {},
            "bin_edges": edges.tolist(),
            "bin_counts": counts.tolist(),
        }
    for col in spec.categorical_out:
        counts = features[col].fillna("<null>").astype(str).value_counts()
        shares = (counts / max(len(features), 1)).round(6)
        profile["categorical"][col] = {
            "top": shares.head(top).to_dict(),
            "other_share": float(shares.iloc[top:].sum()),
            "distinct": len(counts),
        }
    return profile


def drift_reference(project: ProjectConfig, spec: Any, rows: pd.DataFrame, y: pd.Series) -> pd.DataFrame:
    """A seeded sample of the training rows as the drift step needs them: features and label.

    Features are computed here, once per version, so a daily drift check
    only loads a Parquet file. ``drift.reference_sample_rows`` bounds its
    size. (The score's reference is the holdout's, out of sample: scores on
    training rows are sharper than any live day's.)
    """
    from pipelines.core.features import make_features

    n = min(len(rows), project.drift.reference_sample_rows)
    sample = rows.sample(n=n, random_state=0).sort_index()
    frame = make_features(sample, spec).reset_index(drop=True)
    frame[TARGET_COLUMN] = y.loc[sample.index].to_numpy(dtype="float64")
    return frame


def train_challenger(
    project: ProjectConfig,
    end_ds: str,
    *,
    trigger: str = "manual",
    evidence: dict[str, Any] | None = None,
    storage: Storage | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train a challenger on the window ending ``end_ds`` and register it in MLflow.

    Idempotent: when a version already exists for the same training data
    (fingerprint), code version and model config, it is returned (``reused: true``) instead
    of training a duplicate, so a retried or re-run task registers one
    version; ``force`` trains anyway.

    Returns:
        ``model``, ``version``, ``run_id``, ``metrics`` (holdout), ``fingerprint``,
        ``train_days``, ``holdout_days``, ``model_uri`` and the training-set URI.
    """
    import tempfile
    import time

    import pandas as pd

    from pipelines.core.contracts import contract_for
    from pipelines.core.features import feature_spec, make_features
    from pipelines.core.metrics import evaluate
    from pipelines.core.model import build_pipeline, fit, predict_scores
    from pipelines.core.storage import get_storage
    from pipelines.core.tracking import client, configure, experiment_id, run_link

    if trigger not in TRIGGERS:
        raise ConfigError(f"unknown trigger {trigger!r} (one of {TRIGGERS})")
    t0 = time.monotonic()
    contract = contract_for(project)
    spec = feature_spec(project, contract.column_names)
    storage = storage or get_storage()
    ts = build_training_set(project, end_ds, storage=storage)
    if not force:
        existing = _existing_version(project.name, ts["fingerprint"], code_version(), config_hash(project))
        if existing is not None:
            log.info(
                "%s: version %s already trained on this data and code (%s); reusing it",
                project.name,
                existing["version"],
                ts["fingerprint"],
            )
            return {**existing, "trigger": trigger, "training_set": ts["uri"], "seconds": 0.0}
    train_x, train_y = labelled(ts["frames"]["train"], project)
    hold_x, hold_y = labelled(ts["frames"]["holdout"], project)
    if train_y.nunique() < 2 and project.target.task == "classification":
        raise MissingInput(f"{project.name}: the training window has a single class; cannot train")

    pipeline = build_pipeline(project, spec)
    train_window = f"{ts['train_days'][0]}..{ts['train_days'][1]}"
    fit(pipeline, train_x, train_y.to_numpy(), label=f"{project.name} {train_window}")
    scores = predict_scores(pipeline, hold_x, project.target.task)
    names = [project.metrics.primary, *project.metrics.secondary]
    metrics = evaluate(project.target.task, names, hold_y.to_numpy(), scores)
    if project.target.task == "classification":
        metrics["holdout_positive_share"] = float(hold_y.mean())
        metrics["predicted_positive_share"] = float((scores >= project.metrics.classification_threshold).mean())
    fit_seconds = time.monotonic() - t0

    configure()
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    exp_id = experiment_id(project.name)
    log.info("%s: holdout %s=%.4f; logging the run and model to MLflow", project.name, names[0], metrics[names[0]])
    tags = {
        "model_project": project.name,
        "trigger": trigger,
        "trigger_evidence": json.dumps(evidence or {}, sort_keys=True),
        "training_window": train_window,
        "holdout_window": f"{ts['holdout_days'][0]}..{ts['holdout_days'][1]}",
        "end_ds": ts["end_ds"],
        "data_fingerprint": ts["fingerprint"],
        "contract": contract.id,
        "contract_version": contract.version,
        "code_version": code_version(),
        "config_hash": config_hash(project),
        "training_set_uri": ts["uri"],
    }
    raw_cols = spec.raw_inputs
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{project.name} train {ts['end_ds']}", tags=tags) as run:
        mlflow.log_params(
            {
                "model_family": project.model.family,
                "estimator": type(pipeline.named_steps["model"]).__name__,
                **{f"model__{k}": v for k, v in sorted(project.model.params.items())},
                "window_days": project.training.window_days,
                "holdout_days": project.training.holdout_days,
                "features_numeric": ",".join(spec.numeric),
                "features_categorical": ",".join(spec.categorical),
                "features_derived": ",".join(spec.derived),
                "target": project.target.column,
                "task": project.target.task,
                "positive_threshold": project.target.positive_threshold,
                "train_rows": len(train_x),
                "holdout_rows": len(hold_x),
                "missing_days": ",".join(ts["missing_days"]) or "-",
            }
        )
        for context, frame, name in (
            ("training", ts["frames"]["train"], catalog.TRAIN_FILE),
            ("evaluation", ts["frames"]["holdout"], catalog.HOLDOUT_FILE),
        ):
            dataset = mlflow.data.from_pandas(
                frame,
                source=storage.uri(catalog.training_file(project.name, ts["end_ds"], name)),
                name=f"{project.dataset.name}-{context}",
                targets=project.target.column,
                digest=ts["files"][name][:16],
            )
            mlflow.log_input(dataset, context=context)
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items() if v == v} | {"fit_seconds": fit_seconds})
        features = make_features(train_x, spec)
        mlflow.log_dict(reference_profile(features, spec), catalog.REFERENCE_PROFILE)
        reference = drift_reference(project, spec, train_x, train_y)
        mlflow.log_dict({k: ts[k] for k in ts if k != "frames"}, catalog.TRAINING_SET_RECORD)
        example = train_x[raw_cols].head(5)
        signature = infer_signature(example, predict_scores(pipeline, example, project.target.task))
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=project.name,
            pyfunc_predict_fn="predict_proba" if project.target.task == "classification" else "predict",
            serialization_format="cloudpickle",
        )
        # The drift step's references, precomputed once here rather than on every check:
        # training features, and out-of-sample scores with their labels (the holdout).
        holdout_ref = pd.DataFrame({PREDICTION_COLUMN: scores, TARGET_COLUMN: hold_y.to_numpy(dtype="float64")})
        with tempfile.TemporaryDirectory() as tmp:
            for artifact, frame in (
                (catalog.DRIFT_REFERENCE, reference),
                (catalog.HOLDOUT_SCORES_REFERENCE, holdout_ref),
            ):
                folder, _, name = artifact.rpartition("/")
                path = os.path.join(tmp, name)
                frame.to_parquet(path, index=False)
                mlflow.log_artifact(path, artifact_path=folder)
    version = str(info.registered_model_version)
    c = client()
    for k in (
        "trigger",
        "training_window",
        "holdout_window",
        "data_fingerprint",
        "contract_version",
        "code_version",
        "config_hash",
    ):
        c.set_model_version_tag(project.name, version, k, tags[k])
    c.set_model_version_tag(
        project.name, version, "primary_metric", f"{project.metrics.primary}={metrics[project.metrics.primary]:.6f}"
    )
    log.info(
        "%s: trained version %s (run %s) on %s, holdout %s=%.4f, fingerprint %s; MLflow: %s",
        project.name,
        version,
        run.info.run_id,
        tags["training_window"],
        project.metrics.primary,
        metrics[project.metrics.primary],
        ts["fingerprint"],
        run_link(run.info.run_id, run.info.experiment_id),
    )
    return {
        "model": project.name,
        "version": version,
        "run_id": run.info.run_id,
        "model_uri": f"models:/{project.name}/{version}",
        "metrics": {k: (None if v != v else round(v, 6)) for k, v in metrics.items()},
        "fingerprint": ts["fingerprint"],
        "train_days": ts["train_days"],
        "holdout_days": ts["holdout_days"],
        "missing_days": ts["missing_days"],
        "train_rows": len(train_x),
        "holdout_rows": len(hold_x),
        "trigger": trigger,
        "training_set": ts["uri"],
        "seconds": round(time.monotonic() - t0, 2),
        "reused": False,
    }


def _existing_version(model: str, fingerprint: str, code: str, cfg_hash: str) -> dict[str, Any] | None:
    """A registered version trained on the same data, code and model config, if any (newest first)."""
    from pipelines.core.tracking import client

    if code == "unknown" or code.endswith("-dirty"):
        return None  # cannot prove the code is the same
    c = client()
    try:
        versions = c.search_model_versions(f"name='{model}' and tags.data_fingerprint='{fingerprint}'")
    except Exception:  # noqa: BLE001 - no registered model yet
        return None
    for mv in sorted(versions, key=lambda v: -int(v.version)):
        if mv.tags.get("code_version") == code and mv.tags.get("config_hash") == cfg_hash:
            run = c.get_run(mv.run_id)
            metrics = {
                k.removeprefix("holdout_"): round(v, 6) for k, v in run.data.metrics.items() if k.startswith("holdout_")
            }
            window = run.data.tags.get("training_window", "..").split("..")
            hold = run.data.tags.get("holdout_window", "..").split("..")
            return {
                "model": model,
                "version": str(mv.version),
                "run_id": mv.run_id,
                "model_uri": f"models:/{model}/{mv.version}",
                "metrics": metrics,
                "fingerprint": fingerprint,
                "train_days": window,
                "holdout_days": hold,
                "reused": True,
            }
    return None
