"""Which versions are shadows: scored beside the champion, kept out of BI's table, judged on live data.

A version's shadow state is recorded on the version in the MLflow registry
(tags, so the registry UI shows it beside the gate's tags):

- ``shadow``: ``active``, ``retired`` or ``promoted``;
- ``shadow_reason``: why it started (``drift challenger``, ``near miss``, ``named by <who>``, ...);
- ``shadow_started_at`` and, once it ends, ``shadow_ended_at`` and ``shadow_end_reason``.

A scientist names a shadow three ways: ``pipelines shadow add``, the
``shadow`` alias (set in the MLflow UI), or the project's ``shadow.versions``.
Whatever named it, a version that was retired or promoted stays so (the
record wins over the config: a retired version listed in the config is not
scored again), the champion is never its own shadow, and a version rolled
back as bad is not scored. At most ``shadow.max_versions`` are active: the
newest versions win, and starting one more retires the oldest.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.core.tracking import CHAMPION, alias_version

if TYPE_CHECKING:
    from pipelines.core.config import ProjectConfig

log = logging.getLogger(__name__)

#: The alias a scientist can set in the MLflow UI to shadow a version.
SHADOW_ALIAS = "shadow"
STATE_TAG = "shadow"
STATES = ("active", "retired", "promoted")


@dataclass(frozen=True)
class Shadow:
    """An active shadow version: what named it, and since when."""

    version: str
    run_id: str
    source: str  # "registry" (tagged active), "alias", "config"
    reason: str
    started_at: str
    #: ``(first, last)`` day the version saw: its training window's start to its holdout's end.
    seen: tuple[str, str] | None = None

    def saw(self, ds: str) -> bool:
        """Whether the version trained or was gated on day ``ds``: no live evidence there, so not scored."""
        return self.seen is not None and self.seen[0] <= ds <= self.seen[1]


def seen_window(tags: dict[str, str]) -> tuple[str, str] | None:
    """The days a version saw (training window and holdout), from its tags; ``None`` when not recorded."""
    from pipelines.core.tracking import window

    trained, held = window(tags, "training_window"), window(tags, "holdout_window")
    if trained and held:
        return (min(trained[0], held[0]), max(trained[1], held[1]))
    return trained or held


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def select(
    versions: list[Any],
    champion: str | None,
    alias: str | None,
    configured: list[str],
    rolled_back: set[str],
    limit: int,
) -> list[Shadow]:
    """The active shadows, newest first, at most ``limit`` (pure: from the registry's versions and aliases)."""
    by_number = {str(v.version): v for v in versions}
    named: dict[str, str] = {}
    for v in versions:
        if (v.tags or {}).get(STATE_TAG) == "active":
            named[str(v.version)] = "registry"
    for number, source in ((alias, "alias"), *((c, "config") for c in configured)):
        if number and number in by_number:
            named.setdefault(str(number), source)
    out = []
    for number, source in named.items():
        tags = by_number[number].tags or {}
        if number == champion or number in rolled_back or tags.get(STATE_TAG) in ("retired", "promoted"):
            continue
        reason = tags.get("shadow_reason") or {"alias": f"the '{SHADOW_ALIAS}' alias", "config": "shadow.versions"}.get(
            source, "named"
        )
        started = tags.get("shadow_started_at") or ""
        out.append(Shadow(number, by_number[number].run_id, source, reason, started, seen_window(tags)))
    out.sort(key=lambda s: int(s.version), reverse=True)
    return out[:limit]


def active(project: ProjectConfig, c: Any | None = None) -> list[Shadow]:
    """The project's active shadow versions, newest first (at most ``shadow.max_versions``)."""
    from pipelines.core.champions import history, rolled_back
    from pipelines.core.tracking import client

    c = c or client()
    versions = c.search_model_versions(f"name='{project.name}'")
    if not versions:
        return []
    champion = alias_version(c, project.name, CHAMPION)
    alias = alias_version(c, project.name, SHADOW_ALIAS)
    bad = set(rolled_back(history(c, project.name)))
    return select(
        versions,
        None if champion is None else str(champion.version),
        None if alias is None else str(alias.version),
        list(project.shadow.versions),
        bad,
        project.shadow.max_versions,
    )


def start(project: ProjectConfig, version: str, reason: str, c: Any | None = None) -> dict[str, Any]:
    """Make ``version`` an active shadow (recorded on the version); the oldest active ones retire when there
    are more than ``shadow.max_versions``. Returns ``{"version", "reason", "retired": [...]}``.

    Raises:
        ConfigError: the project keeps no shadows (``shadow.max_versions: 0``).
    """
    from pipelines.core.errors import ConfigError
    from pipelines.core.tracking import client

    if project.shadow.max_versions < 1:
        raise ConfigError(f"{project.name}: shadow.max_versions is 0: the project keeps no shadow versions")
    c = c or client()
    version = str(version)
    if (c.get_model_version(project.name, version).tags or {}).get(STATE_TAG) == "active":
        return {"version": version, "reason": reason, "retired": []}  # a retried start: its age and looks stay
    tags = {"shadow": "active", "shadow_reason": reason[:4000], "shadow_started_at": _now()}
    for k, v in tags.items():
        c.set_model_version_tag(project.name, version, k, v)
    # A new start: no end, and the live gate's looks and figures of an earlier stint are not this one's.
    for k in ("shadow_ended_at", "shadow_end_reason", "live_looks", "live_verdict", "live_days", "live_at"):
        _delete_tag(c, project.name, version, k)
    retired = []
    others = [s for s in active_unlimited(project, c) if s.version != version]
    for extra in others[max(project.shadow.max_versions - 1, 0) :]:
        end(project, extra.version, "retired", f"replaced by v{version}: over shadow.max_versions", c)
        retired.append(extra.version)
    log.info("%s: v%s is a shadow (%s)%s", project.name, version, reason, f"; retired {retired}" if retired else "")
    return {"version": version, "reason": reason, "retired": retired}


def active_unlimited(project: ProjectConfig, c: Any) -> list[Shadow]:
    """Every active shadow, newest first, whatever ``shadow.max_versions`` says."""
    limited = project.model_copy(update={"shadow": project.shadow.model_copy(update={"max_versions": 10_000})})
    return active(limited, c)


def end(project: ProjectConfig, version: str, state: str, why: str, c: Any | None = None) -> None:
    """Record that a shadow ended (``retired`` or ``promoted``); the ``shadow`` alias leaves it."""
    from pipelines.core.tracking import client

    if state not in ("retired", "promoted"):
        raise ValueError(f"a shadow ends retired or promoted, not {state!r}")
    c = c or client()
    version = str(version)
    champion = alias_version(c, project.name, CHAMPION)
    if state == "retired" and champion is not None and str(champion.version) == version:
        log.warning("%s: v%s is the champion now: not retired as a shadow (%s)", project.name, version, why)
        return
    c.set_model_version_tag(project.name, version, STATE_TAG, state)
    c.set_model_version_tag(project.name, version, "shadow_ended_at", _now())
    c.set_model_version_tag(project.name, version, "shadow_end_reason", why[:4000])
    alias = alias_version(c, project.name, SHADOW_ALIAS)
    if alias is not None and str(alias.version) == version:
        c.delete_registered_model_alias(project.name, SHADOW_ALIAS)
    log.info("%s: shadow v%s %s: %s", project.name, version, state, why)


def end_if_shadow(project: ProjectConfig, version: str, state: str, why: str, c: Any) -> bool:
    """:func:`end` when ``version`` is a shadow by any name (tagged active, the ``shadow`` alias, the config's
    ``shadow.versions``), else nothing. Called after a promotion's commit point: an MLflow failure here is
    logged, never raised (the version is champion; the next promotion's call ends it)."""
    from mlflow.exceptions import MlflowException

    version = str(version)
    try:
        tags = c.get_model_version(project.name, version).tags or {}
        alias = alias_version(c, project.name, SHADOW_ALIAS)
        named = tags.get(STATE_TAG) == "active" or version in project.shadow.versions
        if named or (alias is not None and str(alias.version) == version):
            end(project, version, state, why, c)
            return True
    except MlflowException as exc:
        log.warning("%s v%s: its shadow state was not ended: %s", project.name, version, exc)
    return False


def _delete_tag(c: Any, model: str, version: str, key: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        c.delete_model_version_tag(model, version, key)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
