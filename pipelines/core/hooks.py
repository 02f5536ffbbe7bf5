"""Named points inside long steps, where an observer can be plugged in without touching the step.

A step calls :func:`point` at the instants that matter for recovery (a
scoring chunk written but not committed, a partition's data published but
not its manifest). Nothing happens unless ``PIPELINES_STEP_HOOK`` names a
callable as ``module:function``; it is then imported once and called with the
point's name. The kill tests plug the ops tooling's fault injector in this way
(``pipelines_ops.faults:hold`` parks the process at a chosen point), so the
library carries the points and no fault-injection logic of its own.

Points of the scoring step: ``chunk_write:<i>``, ``chunk_commit:<i>``,
``publish_data``, ``publish_manifest``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from functools import lru_cache

from pipelines.core.errors import ConfigError

ENV = "PIPELINES_STEP_HOOK"


@lru_cache(maxsize=4)
def _load(spec: str) -> Callable[[str], None]:
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ConfigError(f"{ENV}={spec!r}: expected module:function")
    try:
        hook = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, SyntaxError, ValueError, TypeError, RuntimeError) as exc:
        # A module that cannot be found or raises while loading: the setting is what is wrong.
        raise ConfigError(f"{ENV}={spec!r}: {type(exc).__name__}: {exc}") from None
    if not callable(hook):
        raise ConfigError(f"{ENV}={spec!r}: not a function")
    return hook


def check() -> None:
    """Load the configured hook now, so a bad setting fails a step before its work, not in the middle of it.

    Raises:
        ConfigError: the setting names no importable function.
    """
    spec = os.environ.get(ENV)
    if spec:
        _load(spec)


def point(name: str) -> None:
    """Reach the named point: call the configured hook with it, if any."""
    spec = os.environ.get(ENV)
    if spec:
        _load(spec)(name)
