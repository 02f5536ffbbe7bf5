"""Environment settings: which profile, where data lives, which services.

Three tiers: model configs in ``configs/*.yaml`` say *what*
to build; a profile in ``configs/profiles/<name>.yaml`` says *where* it runs
(``local`` by default, ``prod``); environment variables override the profile.
Secrets never live in either file: boto3 and MLflow read them from the
environment (or an Airflow connection exported to it).

| variable | meaning |
|---|---|
| ``PIPELINES_PROFILE`` | profile name (default ``local``) |
| ``PIPELINES_CONFIG_DIR`` | folder with model configs (default ``<checkout>/configs``) |
| ``PIPELINES_CONTRACTS_DIR`` | folder with data contracts (default ``<checkout>/data_contracts``) |
| ``PIPELINES_DATA_ROOT`` | storage root, a path or ``s3://bucket/prefix`` |
| ``MLFLOW_TRACKING_URI`` | MLflow tracking server or store |
| ``MLFLOW_REGISTRY_URI`` | MLflow model registry (default: the tracking URI) |
| ``AWS_ENDPOINT_URL`` | S3-compatible endpoint (MinIO, a test server) |
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.core.errors import ConfigError

#: The checkout (or install) root: parent of the ``pipelines`` package.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Profile(BaseModel):
    """An environment profile (``configs/profiles/<name>.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    data_root: str = Field(description="storage root: relative to the checkout, absolute, or s3://")
    mlflow_tracking_uri: str
    mlflow_registry_uri: str | None = None
    mlflow_artifact_root: str | None = Field(
        None, description="where new experiments keep artifacts (default: <data_root>/mlflow/artifacts)"
    )
    aws_endpoint_url: str | None = None
    s3_region: str | None = None


class Settings(BaseModel):
    """Resolved environment settings (profile + environment overrides)."""

    model_config = ConfigDict(frozen=True)

    profile: str
    config_dir: Path
    contracts_dir: Path
    data_root: str
    mlflow_tracking_uri: str
    mlflow_registry_uri: str | None
    mlflow_artifact_root: str
    aws_endpoint_url: str | None
    s3_region: str | None
    mlflow_ui_url: str | None = Field(
        None, description="an MLflow UI serving a file/SQLite store (PIPELINES_MLFLOW_UI_URL), for links in logs"
    )

    @property
    def is_s3(self) -> bool:
        return self.data_root.startswith("s3://")


def _resolve_path(value: str) -> str:
    # URIs stay as they are (s3://..., mlflow-artifacts:/ for a tracking
    # server that proxies artifacts); only paths are resolved.
    if value.startswith(("s3://", "mlflow-artifacts:", "http://", "https://", "file://")):
        return value.rstrip("/") or value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    return str(path.resolve())


def _resolve_uri(value: str, data_root: str) -> str:
    # ``{data_root}`` in a profile's URI follows PIPELINES_DATA_ROOT, so a test
    # or a second checkout gets its own MLflow store beside its own data.
    value = value.replace("{data_root}", data_root)
    # Relative sqlite paths are relative to the checkout, so the same profile
    # works from Airflow workers whose cwd is elsewhere.
    prefix = "sqlite:///"
    if value.startswith(prefix) and not value[len(prefix) :].startswith("/"):
        return prefix + str((PROJECT_ROOT / value[len(prefix) :]).resolve())
    return value


def load_profile(name: str, config_dir: Path) -> Profile:
    """Load and validate ``<config_dir>/profiles/<name>.yaml``."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"invalid profile name {name!r}")
    path = config_dir / "profiles" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: profile {name!r} not found")
    from pipelines.core.config import read_yaml

    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: <root>: expected a mapping")
    try:
        return Profile.model_validate({"name": name, **raw})
    except ValidationError as exc:
        from pipelines.core.config import format_validation_error

        raise ConfigError(format_validation_error(path, exc)) from None


def get_settings() -> Settings:
    """Resolve settings from the environment (cached per environment state)."""
    keys = (
        "PIPELINES_PROFILE",
        "PIPELINES_CONFIG_DIR",
        "PIPELINES_CONTRACTS_DIR",
        "PIPELINES_DATA_ROOT",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "PIPELINES_MLFLOW_ARTIFACT_ROOT",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
        "PIPELINES_MLFLOW_UI_URL",
    )
    return _settings(tuple(os.environ.get(k) for k in keys))


@lru_cache(maxsize=8)
def _settings(env: tuple[str | None, ...]) -> Settings:
    (
        profile_name,
        config_dir,
        contracts_dir,
        data_root,
        mlflow_uri,
        registry_uri,
        artifact_root,
        endpoint,
        region,
        ui,
    ) = env
    cfg_dir = Path(_resolve_path(config_dir)) if config_dir else PROJECT_ROOT / "configs"
    profile = load_profile(profile_name or "local", cfg_dir)
    root = _resolve_path(data_root or profile.data_root)
    artifacts = artifact_root or profile.mlflow_artifact_root
    return Settings(
        profile=profile.name,
        config_dir=cfg_dir,
        contracts_dir=Path(_resolve_path(contracts_dir)) if contracts_dir else PROJECT_ROOT / "data_contracts",
        data_root=root,
        mlflow_tracking_uri=_resolve_uri(mlflow_uri or profile.mlflow_tracking_uri, root),
        mlflow_registry_uri=registry_uri or profile.mlflow_registry_uri,
        mlflow_artifact_root=_resolve_path(artifacts) if artifacts else f"{root}/mlflow/artifacts",
        aws_endpoint_url=endpoint or profile.aws_endpoint_url,
        s3_region=region or profile.s3_region,
        mlflow_ui_url=ui.rstrip("/") if ui else None,
    )
