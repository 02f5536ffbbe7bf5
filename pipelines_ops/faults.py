"""Fault injection for the kill tests: park a step at a named point so a test can strike there.

Plugged into the library through its step hook:
``PIPELINES_STEP_HOOK=pipelines_ops.faults:hold``. Then
``PIPELINES_FAULT_HOLD=point[,point]`` parks the process at each named point
(``chunk_write:<i>``, ``chunk_commit:<i>``, ``publish_data``,
``publish_manifest``: see :mod:`pipelines.core.hooks`) after printing
``HOLD <point>`` on stderr, until the file named by ``PIPELINES_FAULT_RELEASE``
exists (or 10 minutes pass). A test kills it, signals it or moves the
champion exactly there. Never set in production.
"""

from __future__ import annotations

import os
import sys
import time

#: The hook spec that plugs :func:`hold` into the library.
HOOK = "pipelines_ops.faults:hold"


def hold(point: str) -> None:
    """Park at ``point`` when ``PIPELINES_FAULT_HOLD`` names it."""
    holds = os.environ.get("PIPELINES_FAULT_HOLD")
    if not holds or point not in holds.split(","):
        return
    print(f"HOLD {point}", file=sys.stderr, flush=True)
    release = os.environ.get("PIPELINES_FAULT_RELEASE")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not (release and os.path.exists(release)):
        time.sleep(0.05)
