"""Registered model versions loaded once per worker: a local cache of their files, by version.

A registered version is immutable (its run, and so its artifacts, never
change), so the files of ``name`` version ``v`` of run ``r`` are kept on the
worker's disk after the first load. The next task that scores with that
version reads them from there: no registry query, no artifact download, and
no ``import mlflow`` (4 s a task here): the pipeline is unpickled as MLflow's
scikit-learn flavor does it (``cloudpickle``, the format training logs).
Anything else (another format, logged code paths) is loaded by MLflow from
the cached files.

An entry is keyed by the registry URI, the name, the version and the run id
(a registry recreated with the same version numbers has other run ids). It is
written whole: downloaded into a temp folder, the SHA-256 of every file
recorded, then renamed into place; every load checks the record first, and a
damaged or partial entry is removed and downloaded again. Entries unused for
the longest go once there are more than :data:`KEEP`.

``PIPELINES_MODEL_CACHE`` sets the folder (default ``~/.cache/pipelines/models``,
created private to the worker's user; a folder another user owns or may write
is not used); ``off`` turns the cache off. The SHA-256 record guards against
damage, not against a writer of the worker's own files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Entries kept per worker (the least recently used go first, once idle for IDLE_SECONDS).
KEEP = 16
IDLE_SECONDS = 600
#: A download folder older than this was left by a killed process.
ABANDONED_SECONDS = 3600
RECORD = "pipelines-cache.json"


def cache_dir() -> Path | None:
    """The cache folder, or ``None`` when turned off, or when it is not the worker's own (another user's, or
    writable by others: what it holds is unpickled, so only the worker may write it)."""
    import stat

    value = os.environ.get("PIPELINES_MODEL_CACHE", "")
    if value.strip().lower() == "off":
        return None
    try:
        root = Path(value).expanduser() if value else Path.home() / ".cache" / "pipelines" / "models"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = root.stat()
    except (OSError, RuntimeError) as exc:  # RuntimeError: no home directory (an arbitrary container uid)
        root = value or "~/.cache/pipelines/models"
        log.warning("model cache %s unusable (%s): models are loaded from MLflow", root, exc)
        return None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        log.warning("model cache %s is not this user's alone: models are loaded from MLflow", root)
        return None
    return root


def _key(name: str, version: str, run_id: str) -> str:
    from pipelines.core.settings import get_settings

    settings = get_settings()
    registry = settings.mlflow_registry_uri or settings.mlflow_tracking_uri
    return hashlib.sha256(json.dumps([registry, name, str(version), run_id]).encode()).hexdigest()[:32]


def _digests(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != RECORD):
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
        out[path.relative_to(folder).as_posix()] = h.hexdigest()
    return out


def _intact(entry: Path) -> bool:
    try:
        record = json.loads((entry / RECORD).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("files") == _digests(entry)


def _download(uri: str, run_id: str, root: Path, key: str) -> Path:
    """The model's files fetched from MLflow into a new entry (renamed into place whole).

    Raises:
        MissingInput: the version's model was made by another run than ``run_id`` (the registry changed).
    """
    import mlflow.artifacts
    import yaml

    from pipelines.core.errors import MissingInput
    from pipelines.core.tracking import configure

    configure()
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp / "dl")))
        made_by = (yaml.safe_load((local / "MLmodel").read_text()) or {}).get("run_id")
        if made_by and made_by != run_id:
            raise MissingInput(f"{uri} is now the model of run {made_by}, not of run {run_id}: the registry changed")
        entry_tmp = tmp / "entry"
        local.rename(entry_tmp)
        (entry_tmp / RECORD).write_text(json.dumps({"uri": uri, "files": _digests(entry_tmp)}, sort_keys=True))
        entry = root / key
        try:
            entry_tmp.rename(entry)
        except OSError:  # another process put the same version there first: use theirs if whole
            if not _intact(entry):
                shutil.rmtree(entry, ignore_errors=True)
                entry_tmp.rename(entry)
        return entry
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unpickle(entry: Path) -> Any:
    """The pipeline from a model folder: unpickled directly when MLflow's sklearn flavor would only unpickle it."""
    import yaml

    meta = yaml.safe_load((entry / "MLmodel").read_text()) or {}
    flavor = (meta.get("flavors") or {}).get("sklearn") or {}
    pickled = flavor.get("pickled_model")
    if flavor.get("serialization_format") == "cloudpickle" and pickled and not flavor.get("code"):
        import cloudpickle

        with open(entry / pickled, "rb") as fh:
            return cloudpickle.load(fh)
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(entry))


def _prune(root: Path, keep: Path) -> None:
    """Drop the least recently used entries beyond :data:`KEEP` (never one used in the last
    :data:`IDLE_SECONDS`: another process may be loading it) and downloads abandoned by a killed process."""
    import time

    now = time.time()
    entries = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_used)
    for old in entries[: max(0, len(entries) - KEEP)]:
        if old != keep and now - _used(old) > IDLE_SECONDS:
            shutil.rmtree(old, ignore_errors=True)
    for partial in root.glob(".*"):
        if partial.is_dir() and now - _used(partial) > ABANDONED_SECONDS:
            shutil.rmtree(partial, ignore_errors=True)


def _used(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def load_version(name: str, version: str, run_id: str) -> Any:
    """The fitted pipeline of registered version ``version`` of ``name`` (made by run ``run_id``)."""
    uri = f"models:/{name}/{version}"
    root = cache_dir()
    if root is None:
        import mlflow.sklearn

        from pipelines.core.tracking import configure

        configure()
        return mlflow.sklearn.load_model(uri)
    key = _key(name, version, run_id)
    entry = root / key
    if entry.is_dir() and _intact(entry):
        try:
            model = _unpickle(entry)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError):  # pruned or refreshed meanwhile
            model = None
        if model is not None:
            log.info("%s v%s: loaded from the worker's model cache (%s)", name, version, entry)
            _touch(entry)
            _prune(root, entry)
            return model
    shutil.rmtree(entry, ignore_errors=True)
    entry = _download(uri, run_id, root, key)
    log.info("%s v%s: downloaded into the worker's model cache (%s)", name, version, entry)
    _touch(entry)
    _prune(root, entry)
    return _unpickle(entry)


def _touch(entry: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(entry)
