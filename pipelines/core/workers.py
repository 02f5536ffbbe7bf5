"""Which worker ran a task: one name for Airflow's task instances and the scoring commit markers.

Airflow records ``task_instance.hostname`` from ``[core] hostname_callable``;
its default gives every Celery worker on one machine the same name, so the
prod profile points it at :func:`worker_hostname`
(``AIRFLOW__CORE__HOSTNAME_CALLABLE=pipelines.core.workers.worker_hostname``) and
gives each worker ``PIPELINES_WORKER_NAME``. The scoring step writes the same
name into each chunk's commit marker. Imports nothing from Airflow.
"""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    """``PIPELINES_WORKER_NAME`` when set (one per worker), else the machine's host name."""
    return os.environ.get("PIPELINES_WORKER_NAME") or socket.gethostname()
