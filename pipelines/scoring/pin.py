"""Pinning: which model version a scoring run uses, resolved once and recorded in its plan."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError, NoChampion

if TYPE_CHECKING:
    from pipelines.core.config import ProjectConfig

#: ``current``: today's ``champion``; ``as_of_partition``: the version that was champion on the partition's date.
CHOICES = ("current", "as_of_partition")
#: The choice recorded for a shadow lane: the version is the lane's own.
SHADOW = "shadow"


@dataclass(frozen=True)
class Pin:
    """The version a run scores with, and what traces every row it scores back to it."""

    name: str
    version: str
    run_id: str
    uri: str
    choice: str
    training_fingerprint: str
    training_window: str
    training_contract_version: str
    pinned_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_of(versions: list[Any], ds: str, entries: list[dict[str, Any]]) -> Any | None:
    """The version that was champion on ``ds`` (pure): the newest one that held the ``champion`` alias, was
    not rolled back as bad since, and whose window ended by then.

    Which versions were champion comes from the alias history ``entries``
    (:mod:`pipelines.core.champions`), the record written with each alias
    move, never from a version's tags; ties on the window's end go to the
    higher version number.
    """
    from pipelines.core.champions import ever_champion, rolled_back
    from pipelines.core.tracking import window

    champions = ever_champion(entries) - set(rolled_back(entries))
    eligible = []
    for v in versions:
        span = window(v.tags or {})
        if str(v.version) in champions and span and span[1] <= ds:
            eligible.append((span[1], int(v.version), v))
    return max(eligible, key=lambda t: (t[0], t[1]))[2] if eligible else None


def pin_model(project: ProjectConfig, ds: str, choice: str) -> Pin:
    """The version this run scores with, resolved once.

    Raises:
        NoChampion: no champion (``current``), or none as of ``ds``.
        ConfigError: an unknown choice.
    """
    from pipelines.core.tracking import CHAMPION, alias_version, client

    if choice not in CHOICES:
        raise ConfigError(f"model choice {choice!r} is not one of {CHOICES}")
    c = client()
    if choice == "current":
        mv = alias_version(c, project.name, CHAMPION)  # an outage raises (and the task retries)
        if mv is None:
            raise NoChampion(f"{project.name}: no '{CHAMPION}' to score with (promote a version first)")
    else:
        from pipelines.core.champions import history

        mv = as_of(c.search_model_versions(f"name='{project.name}'"), ds, history(c, project.name))
        if mv is None:
            raise NoChampion(
                f"{project.name}: no version was champion on {ds} (none held the champion alias, and was not "
                f"rolled back since, with a window ending by then)"
            )
    return _pin(project, mv, choice)


def pin_shadow(project: ProjectConfig, version: str) -> Pin:
    """The pin of a shadow lane: the registered version itself (a deleted version is a named error).

    Raises:
        NoChampion: no such version is registered (any more).
    """
    from mlflow.exceptions import MlflowException

    from pipelines.core.tracking import client

    try:
        mv = client().get_model_version(project.name, str(version))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise NoChampion(f"{project.name}: shadow version {version} is not registered") from None
        raise
    return _pin(project, mv, SHADOW)


def _pin(project: ProjectConfig, mv: Any, choice: str) -> Pin:
    tags = mv.tags or {}
    return Pin(
        name=project.name,
        version=str(mv.version),
        run_id=mv.run_id,
        uri=f"models:/{project.name}/{mv.version}",
        choice=choice,
        training_fingerprint=tags.get("data_fingerprint", ""),
        training_window=tags.get("training_window", ""),
        training_contract_version=tags.get("contract_version", ""),
        pinned_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
