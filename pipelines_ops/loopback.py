"""HTTP on loopback for the stacks this repo starts itself (``make demo``, the prod profile, their tests).

Standard library only, no Airflow import: free ports, a status probe, JSON
calls that never go through a proxy (the endpoints are on 127.0.0.1), and a
client of Airflow's REST API (v2) that logs in once.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
from typing import Any

# Where SimpleAuthManager writes the passwords it generates (``airflow standalone``).
GENERATED_PASSWORDS = "simple_auth_manager_passwords.json.generated"

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all bound at once, so none is handed out twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET, or None when nothing answers."""
    try:
        with _DIRECT.open(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def basic_auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def call(
    url: str, body: Any = None, *, method: str | None = None, headers: dict[str, str] | None = None, timeout: float = 60
) -> Any:
    """One JSON request (POST when there is a body, unless ``method`` says otherwise); the decoded answer.

    Raises ``urllib.error.HTTPError`` for an error status.
    """
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(  # noqa: S310 - http on loopback, to a port this repo chose
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    with _DIRECT.open(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


class AirflowApi:
    """Airflow's REST API (v2) as one user; the bearer token is fetched once, on first use."""

    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.user, self.password = user, password
        self._token: str | None = None

    def login(self) -> str:
        """A bearer token (``POST /auth/token``); raises ``HTTPError`` for a wrong password."""
        if self._token is None:
            login = {"username": self.user, "password": self.password}
            self._token = call(f"{self.base_url}/auth/token", login, timeout=30)["access_token"]
        return self._token

    def __call__(self, path: str, method: str | None = None, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.login()}"}
        return call(f"{self.base_url}{path}", body, method=method, headers=headers)

    def runs(self, dag_id: str) -> list[dict]:
        """Every run of ``dag_id``, page by page (the API caps a page at ``maximum_page_limit``, 100)."""
        runs: list[dict] = []
        while True:
            page = self(f"/api/v2/dags/{dag_id}/dagRuns?limit=100&offset={len(runs)}")
            runs += page["dag_runs"]
            if not page["dag_runs"] or len(runs) >= page["total_entries"]:
                return runs

    def task_instances(self, dag_id: str, run_id: str = "~") -> list[dict]:
        return self(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
