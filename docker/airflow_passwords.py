"""Write SimpleAuthManager's passwords file from the environment (run by airflow-init).

Every user of ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS`` (``name:role,...``)
gets the password in ``AIRFLOW_<NAME>_PASSWORD`` (the name upper-cased, any
character other than a letter or a digit as ``_``), from docker/.env. A user
without one stops the job: the api-server would otherwise generate a password
and print it in its log.

The file is the JSON object SimpleAuthManager reads (``{"name": "password"}``),
at ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE``. It is rewritten whole
on every run, so docker/.env stays its only source (a changed password applies
at the next ``up``, a user removed from the list loses its entry), atomically
(a temporary file in the same folder, renamed over it) and readable by its owner
only (mode 0600, uid 50000). Values only travel through the environment and the
file: nothing is printed and nothing is passed on a command line.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile


def password_variable(user: str) -> str:
    """``AIRFLOW_<USER>_PASSWORD``, the environment variable holding the password of ``user``."""
    return "AIRFLOW_" + re.sub(r"[^A-Z0-9]", "_", user.upper()) + "_PASSWORD"


def users(value: str) -> list[str]:
    """The user names of a ``name:role[:teams],...`` list, as SimpleAuthManager splits it."""
    return [item.strip().split(":")[0] for item in value.split(",") if item.strip()]


def main() -> int | str:
    """0 once the file is written; otherwise the message ``sys.exit`` prints (exit status 1)."""
    names = users(os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ""))
    if not names:
        return "airflow-init: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS names no user"
    variables = {name: password_variable(name) for name in names}
    missing = sorted({var for var in variables.values() if not os.environ.get(var)})
    if missing:
        return "airflow-init: set in docker/.env (and pass to airflow-init): " + ", ".join(missing)
    if len(set(variables.values())) != len(variables):
        return "airflow-init: two users share one password variable: " + ", ".join(sorted(variables))

    path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".passwords-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            json.dump({name: os.environ[var] for name, var in variables.items()}, out)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    print(f"airflow-init: wrote the passwords of {', '.join(names)} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
