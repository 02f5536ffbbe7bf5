"""Hypothesis profiles of the property tests, chosen with ``HYPOTHESIS_PROFILE``.

| profile | examples per unit | use |
|---|---|---|
| ``ci`` (default) | 130 | every test run: 325 generated deliveries, derandomized (the same ones every run) |
| ``long`` | 1500 | ``make test-property-long`` (``HYPOTHESIS_PROFILE=long``): 3750 deliveries, a new seed each run |
| ``dev`` | 15 | a quick loop while editing the tests |

Each property asks for a multiple of the profile's ``max_examples`` (``examples()`` in
``test_deliveries.py``), so one knob scales the whole folder. No example database: a failure is reported with
its minimal delivery (and ``print_blob`` gives the ``@reproduce_failure`` line).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

_COMMON = {
    # No "explain" phase: it traces every line run while shrinking, and Great Expectations
    # under a tracer makes one example take seconds instead of a tenth of a second.
    "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    "deadline": None,
    "database": None,
    "print_blob": True,
    # The `storage`/`project` fixtures are shared by every example of a test on purpose:
    # each example wipes the partition it uses before landing its delivery.
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
}

settings.register_profile("ci", max_examples=130, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=1500, derandomize=False, **_COMMON)
settings.register_profile("dev", max_examples=15, derandomize=True, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
