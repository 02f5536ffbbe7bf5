"""The dataset and model configs that fail to load, as one Airflow import error; this file defines no DAG.

Every DAG file builds its DAGs only for the projects whose ``configs/*.yaml``
loads (``_common.projects()``) and, for ingest, the datasets whose
``configs/datasets/*.yaml`` loads, so a bad config cannot take the others'
DAGs down with it: its own project (or dataset, and the projects reading it)
just has no DAGs. Airflow records
import errors per DAG file, so this file is where a bad config shows in the
UI: while any config file fails to load it raises one ``ConfigError`` listing
every such file with its one-line problem (unknown key, bad value, not UTF-8,
not valid YAML, empty, a file name that is no project name, ...). When every
config loads it defines nothing and raises nothing, and its import error goes
away at the next parse.
"""

from __future__ import annotations

from _common import config_problems

from pipelines.core.errors import ConfigError

_problems = config_problems()
if _problems:
    raise ConfigError(
        f"{len(_problems)} config file(s) failed to load; a dataset's has no ingest_<dataset> DAG, a project's "
        "(or one reading a bad dataset) has no drift_, retrain_, batch_score_, live_gate_<project> DAGs; the others "
        "are unaffected:\n" + "\n".join(f"- {problem}" for problem in _problems)
    )
