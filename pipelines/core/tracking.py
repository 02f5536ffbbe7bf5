"""MLflow access: tracking URI, experiments with a known artifact root, the registry client, alias lookups."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pipelines.core.settings import Settings, get_settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous-champion"


def configure(settings: Settings | None = None) -> Any:
    """Point MLflow at the profile's tracking server/store; returns the ``mlflow`` module."""
    settings = settings or get_settings()
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Progress bars are for terminals; in task logs they are noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    # MLflow's setters also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI
    # into os.environ, where our settings would then read them back as a
    # user override: keep the environment as the user set it.
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(settings.mlflow_registry_uri or uri)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return mlflow


def experiment_id(name: str, settings: Settings | None = None) -> str:
    """The experiment named after the model project, created with the profile's artifact root."""
    settings = settings or get_settings()
    mlflow = configure(settings)
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = settings.mlflow_artifact_root.rstrip("/")
    if root.startswith("mlflow-artifacts:"):
        # Artifacts proxied by the tracking server: its default location,
        # keyed by experiment id, which its auth layer maps to permissions
        # (a path of our own is refused for any account but the admin).
        artifact_location = None
    else:
        location = root if root.startswith(("s3://", "file://")) else f"file://{root}"
        artifact_location = f"{location}/{name}"
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_location)
    except Exception as exc:
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise exc from None
        return exp.experiment_id


def client(settings: Settings | None = None) -> Any:
    configure(settings)
    from mlflow import MlflowClient

    return MlflowClient()


# MLflow's error codes for a registered model or alias that does not exist.
_MISSING = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


def alias_version(c: Any, model: str, alias: str = CHAMPION) -> Any | None:
    """The model version behind ``alias``, or ``None`` when the model or alias does not exist.

    Any other failure (the tracking server down, a timeout) propagates: a
    caller must not mistake an outage for "no champion" and fail for good.
    """
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(model, alias)
    except MlflowException as exc:
        if exc.error_code in _MISSING:
            return None
        raise


def window(tags: dict[str, str] | None, tag: str = "holdout_window") -> tuple[str, str] | None:
    """A ``first..last`` day window recorded as a version or run tag, or ``None`` when absent or malformed.

    Training records ``training_window`` and ``holdout_window``; the holdout's
    end is the end of everything the version saw.
    """
    value = (tags or {}).get(tag) or ""
    first, sep, last = value.partition("..")
    return (first, last) if sep and first and last else None


def run_link(run_id: str, experiment_id: str | None = None, settings: Settings | None = None) -> str:
    """Where a person opens a run: its page in the MLflow UI, or ``runs:/<id>`` when no UI is known.

    The UI is the tracking server itself, or for a file/SQLite store the one
    ``PIPELINES_MLFLOW_UI_URL`` names (``make demo`` serves its store there).
    """
    settings = settings or get_settings()
    uri = settings.mlflow_tracking_uri.rstrip("/")
    ui = uri if uri.startswith(("http://", "https://")) else settings.mlflow_ui_url
    if ui and experiment_id:
        return f"{_without_credentials(ui)}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"runs:/{run_id}"


def _without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part: a link goes into cards and messages, a credential never."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def run_url(run_id: str | None) -> str | None:
    """:func:`run_link` for a run known by id only (its experiment looked up); None without a run.

    For messages and reports: a tracking store that cannot be read gives ``runs:/<id>``, never an error.
    """
    if not run_id:
        return None
    try:
        experiment = client().get_run(run_id).info.experiment_id
    except Exception as exc:  # noqa: BLE001 - a link is worth less than the message that carries it
        log.warning("MLflow run %s: no experiment for its link (%s: %s)", run_id, type(exc).__name__, exc)
        experiment = None
    return run_link(run_id, experiment)
