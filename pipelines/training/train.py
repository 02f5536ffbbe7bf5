"""Challenger training, tracked in MLflow.

:func:`train_challenger` builds the window's training set
(:mod:`~pipelines.training.dataset`), fits the project's pipeline (features +
encoding + estimator, one object), evaluates it on the holdout, and logs
everything to one MLflow run: params, metrics, the training and holdout sets
as dataset inputs with their digests and sources, tags for window,
fingerprint, contract version, code version, trigger and evidence, the drift
references (:mod:`~pipelines.training.reference`), and the model itself,
registered as a new version of the project's model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.errors import ConfigError, MissingInput
from pipelines.core.features import PREDICTION_COLUMN, TARGET_COLUMN
from pipelines.core.settings import PROJECT_ROOT

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)

TRIGGERS = ("manual", "schedule", "drift")
#: Version tags copied from the run, so registry searches need no run lookups.
VERSION_TAGS = (
    "trigger",
    "training_window",
    "holdout_window",
    "data_fingerprint",
    "contract_version",
    "code_version",
    "config_hash",
    "holdout_md5",
)


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
    """Hash of everything in the config that shapes a trained model (features, target, estimator, window).

    Of the dataset, what identifies its rows (name, contract, landing format): its ingest schedule or
    description shape no model. An empty ``features.expressions`` is left out, so configs without
    expression features hash as they did before expressions existed (their versions are still reused).
    """
    shaping = project.model_dump(include={"target", "features", "model", "training", "metrics"}, mode="json")
    shaping["dataset"] = project.dataset.model_dump(include={"name", "contract", "landing_format"}, mode="json")
    if not shaping["features"].get("expressions"):
        shaping["features"].pop("expressions", None)
    # The sample's effect is in the data fingerprint (a sampled window is other rows): not a config change.
    shaping["training"].pop("sample", None)
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Fitted:
    """A fitted pipeline and its holdout evaluation."""

    pipeline: Any
    train_x: pd.DataFrame
    train_y: pd.Series
    hold_x: pd.DataFrame
    hold_y: pd.Series
    scores: np.ndarray
    metrics: dict[str, float]
    seconds: float


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
    from pipelines.core.contracts import contract_for
    from pipelines.core.features import feature_spec
    from pipelines.core.storage import get_storage
    from pipelines.core.tracking import run_link
    from pipelines.training.dataset import build_training_set

    if trigger not in TRIGGERS:
        raise ConfigError(f"unknown trigger {trigger!r} (one of {TRIGGERS})")
    t0 = time.monotonic()
    contract = contract_for(project)
    spec = feature_spec(project, contract.column_names, {c.name: c.logical_type for c in contract.columns})
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
    fitted = _fit(project, spec, ts, t0)
    tags = _run_tags(project, contract, ts, trigger, evidence)
    run, version = _log_run(project, spec, ts, fitted, tags, storage)
    primary = project.metrics.primary
    log.info(
        "%s: trained version %s (run %s) on %s, holdout %s=%.4f, fingerprint %s; MLflow: %s",
        project.name,
        version,
        run.info.run_id,
        tags["training_window"],
        primary,
        fitted.metrics[primary],
        ts["fingerprint"],
        run_link(run.info.run_id, run.info.experiment_id),
    )
    return {
        "model": project.name,
        "version": version,
        "run_id": run.info.run_id,
        "model_uri": f"models:/{project.name}/{version}",
        "metrics": {k: (None if v != v else round(v, 6)) for k, v in fitted.metrics.items()},
        "fingerprint": ts["fingerprint"],
        "train_days": ts["train_days"],
        "holdout_days": ts["holdout_days"],
        "missing_days": ts["missing_days"],
        "train_rows": len(fitted.train_x),
        "holdout_rows": len(fitted.hold_x),
        "trigger": trigger,
        "training_set": ts["uri"],
        "seconds": round(time.monotonic() - t0, 2),
        "reused": False,
    }


def _fit(project: ProjectConfig, spec: Any, ts: dict[str, Any], t0: float) -> Fitted:
    """Fit the project's pipeline on the labelled training rows and evaluate it on the holdout."""
    from pipelines.core.metrics import evaluate
    from pipelines.core.model import build_pipeline, fit, predict_scores
    from pipelines.training.dataset import labelled

    train_x, train_y = labelled(ts["frames"]["train"], project)
    hold_x, hold_y = labelled(ts["frames"]["holdout"], project)
    if train_y.nunique() < 2 and project.target.task == "classification":
        raise MissingInput(f"{project.name}: the training window has a single class; cannot train")
    pipeline = build_pipeline(project, spec)
    fit(pipeline, train_x, train_y.to_numpy(), label=f"{project.name} {ts['train_days'][0]}..{ts['train_days'][1]}")
    scores = predict_scores(pipeline, hold_x, project.target.task)
    names = [project.metrics.primary, *project.metrics.secondary]
    metrics = evaluate(project.target.task, names, hold_y.to_numpy(), scores)
    if project.target.task == "classification":
        metrics["holdout_positive_share"] = float(hold_y.mean())
        metrics["predicted_positive_share"] = float((scores >= project.metrics.classification_threshold).mean())
    return Fitted(pipeline, train_x, train_y, hold_x, hold_y, scores, metrics, time.monotonic() - t0)


def _run_tags(
    project: ProjectConfig, contract: Any, ts: dict[str, Any], trigger: str, evidence: dict[str, Any] | None
) -> dict[str, str]:
    """What the run records about why and on what it trained (lineage reads these)."""
    return {
        "model_project": project.name,
        "trigger": trigger,
        "trigger_evidence": json.dumps(evidence or {}, sort_keys=True),
        "training_window": f"{ts['train_days'][0]}..{ts['train_days'][1]}",
        "holdout_window": f"{ts['holdout_days'][0]}..{ts['holdout_days'][1]}",
        "end_ds": ts["end_ds"],
        "data_fingerprint": ts["fingerprint"],
        "contract": contract.id,
        "contract_version": contract.version,
        "code_version": code_version(),
        "config_hash": config_hash(project),
        "training_set_uri": ts["uri"],
        "holdout_md5": ts["files"][catalog.HOLDOUT_FILE],
        "training_sample": json.dumps(ts["sample"], sort_keys=True),
    }


def _params(project: ProjectConfig, spec: Any, ts: dict[str, Any], fitted: Fitted) -> dict[str, Any]:
    return {
        "model_family": project.model.family,
        "estimator": type(fitted.pipeline.named_steps["model"]).__name__,
        **{f"model__{k}": v for k, v in sorted(project.model.params.items())},
        "window_days": project.training.window_days,
        "holdout_days": project.training.holdout_days,
        "features_numeric": ",".join(spec.numeric),
        "features_categorical": ",".join(spec.categorical),
        "features_derived": ",".join(spec.derived),
        "features_expressions": ",".join(e.name for e in spec.expressions),
        **{f"feature_expr__{e.name}": e.expr for e in spec.expressions},  # at most 2,000 characters each
        "target": project.target.column,
        "task": project.target.task,
        "positive_threshold": project.target.positive_threshold,
        "train_rows": len(fitted.train_x),
        "holdout_rows": len(fitted.hold_x),
        "missing_days": ",".join(ts["missing_days"]) or "-",
        "train_rows_in_window": ts["sample"]["train"]["rows_in_window"],
        "sample_rate": ts["sample"]["train"]["rate"],
    }


def _log_run(
    project: ProjectConfig, spec: Any, ts: dict[str, Any], fitted: Fitted, tags: dict[str, str], storage: Storage
) -> tuple[Any, str]:
    """One MLflow run with everything about the challenger; registers it and tags the new version."""
    from pipelines.core.tracking import client, configure, experiment_id

    configure()
    import mlflow
    import mlflow.sklearn

    primary = project.metrics.primary
    log.info("%s: holdout %s=%.4f; logging the run and model to MLflow", project.name, primary, fitted.metrics[primary])
    name = f"{project.name} train {ts['end_ds']}"
    with mlflow.start_run(experiment_id=experiment_id(project.name), run_name=name, tags=tags) as run:
        mlflow.log_params(_params(project, spec, ts, fitted))
        _log_inputs(mlflow, project, ts, storage)
        metrics = {f"holdout_{k}": v for k, v in fitted.metrics.items() if v == v}
        mlflow.log_metrics(metrics | {"fit_seconds": fitted.seconds})
        mlflow.log_dict({k: ts[k] for k in ts if k != "frames"}, catalog.TRAINING_SET_RECORD)
        _log_evaluation(mlflow, project, fitted)
        info = _log_model(mlflow, project, spec, fitted)
        _log_references(mlflow, project, spec, fitted)
    version = str(info.registered_model_version)
    c = client()
    for k in VERSION_TAGS:
        c.set_model_version_tag(project.name, version, k, tags[k])
    c.set_model_version_tag(project.name, version, "primary_metric", f"{primary}={fitted.metrics[primary]:.6f}")
    from pipelines.training.card import refresh_cards

    refresh_cards(project, [version], c)  # registered, not yet gated
    return run, version


def _log_evaluation(mlflow: Any, project: ProjectConfig, fitted: Fitted) -> None:
    """The holdout's metric intervals, slices and feature importance (the model card's figures)."""
    from pipelines.training.evaluation import evaluation

    try:
        record = evaluation(project, fitted.pipeline, fitted.hold_x, fitted.hold_y.to_numpy(), fitted.scores)
    except Exception:  # the card's figures; never the reason a version is not registered
        log.exception("%s: the holdout evaluation for the model card failed; the card will say so", project.name)
        return
    mlflow.log_dict(record, catalog.EVALUATION)


def _log_inputs(mlflow: Any, project: ProjectConfig, ts: dict[str, Any], storage: Storage) -> None:
    """The training and holdout sets as the run's dataset inputs, with their digests and storage URIs."""
    for context, part, name in (
        ("training", "train", catalog.TRAIN_FILE),
        ("evaluation", "holdout", catalog.HOLDOUT_FILE),
    ):
        dataset = mlflow.data.from_pandas(
            ts["frames"][part],
            source=storage.uri(catalog.training_file(project.name, ts["end_ds"], name)),
            name=f"{project.dataset.name}-{context}",
            targets=project.target.column,
            digest=ts["files"][name][:16],
        )
        mlflow.log_input(dataset, context=context)


def _log_model(mlflow: Any, project: ProjectConfig, spec: Any, fitted: Fitted) -> Any:
    """The fitted pipeline as one MLflow model (preprocessing included), registered as a new version."""
    from mlflow.models import infer_signature

    from pipelines.core.model import predict_scores

    example = fitted.train_x[spec.raw_inputs].head(5)
    signature = infer_signature(example, predict_scores(fitted.pipeline, example, project.target.task))
    return mlflow.sklearn.log_model(
        fitted.pipeline,
        name=catalog.MODEL_ARTIFACT,
        signature=signature,
        input_example=example,
        registered_model_name=project.name,
        pyfunc_predict_fn="predict_proba" if project.target.task == "classification" else "predict",
        serialization_format="cloudpickle",
    )


def _log_references(mlflow: Any, project: ProjectConfig, spec: Any, fitted: Fitted) -> None:
    """The drift step's references, precomputed once here rather than on every check.

    The training features' profile and a seeded sample of them with labels,
    and the holdout's out-of-sample scores with their labels.
    """
    import tempfile

    import pandas as pd

    from pipelines.core.features import make_features
    from pipelines.training.reference import drift_reference, reference_profile

    features = make_features(fitted.train_x, spec)
    mlflow.log_dict(reference_profile(features, spec), catalog.REFERENCE_PROFILE)
    reference = drift_reference(project, spec, fitted.train_x, fitted.train_y)
    holdout = pd.DataFrame({PREDICTION_COLUMN: fitted.scores, TARGET_COLUMN: fitted.hold_y.to_numpy(dtype="float64")})
    with tempfile.TemporaryDirectory() as tmp:
        for name, frame in ((catalog.DRIFT_REFERENCE_FILE, reference), (catalog.HOLDOUT_SCORES_FILE, holdout)):
            path = os.path.join(tmp, name)
            frame.to_parquet(path, index=False)
            mlflow.log_artifact(path, artifact_path=catalog.REFERENCE_DIR)


def _existing_version(model: str, fingerprint: str, code: str, cfg_hash: str) -> dict[str, Any] | None:
    """A registered version trained on the same data, code and model config, if any (newest first).

    A version rolled back as bad is never reused: training on the same data
    registers a new version (which the gate then refuses as its twin unless forced).
    """
    from pipelines.core.champions import history, rolled_back
    from pipelines.core.tracking import client
    from pipelines.core.tracking import window as tracking_window

    if code == "unknown" or code.endswith("-dirty"):
        return None  # cannot prove the code is the same
    c = client()
    try:
        versions = c.search_model_versions(f"name='{model}' and tags.data_fingerprint='{fingerprint}'")
    except Exception:  # noqa: BLE001 - no registered model yet
        return None
    bad = rolled_back(history(c, model)) if versions else {}
    for mv in sorted(versions, key=lambda v: -int(v.version)):
        if str(mv.version) in bad:
            log.info(
                "%s: v%s was trained on the same data but rolled back (%s): not reused",
                model,
                mv.version,
                bad[str(mv.version)],
            )
            continue
        if mv.tags.get("code_version") == code and mv.tags.get("config_hash") == cfg_hash:
            run = c.get_run(mv.run_id)
            metrics = {
                k.removeprefix("holdout_"): round(v, 6) for k, v in run.data.metrics.items() if k.startswith("holdout_")
            }
            window = list(tracking_window(run.data.tags, "training_window") or ("", ""))
            hold = list(tracking_window(run.data.tags, "holdout_window") or ("", ""))
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
