"""Nothing key-like is committed: every tracked file is scanned for credentials.

Patterns: cloud and VCS token formats, private key blocks, and assignments of
a long random-looking value to a key-like name (``password``, ``secret``,
``token``, ``access_key``, ``fernet_key``...). Placeholders (``change-me``,
``${VAR}``, values the test servers accept such as ``testing``) pass; a
real-looking value anywhere fails, with the file and line.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections import Counter

import pytest

from pipelines.core.settings import PROJECT_ROOT

TOKEN_FORMATS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key block": re.compile(r"-----BEGIN (RSA |EC |OPENSSH |DSA |PGP |ENCRYPTED )?PRIVATE KEY( BLOCK)?-----"),
    "JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "credentials in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@${}]*:(?!\$\{)[^/\s:@${}]{3,}@"),
}
KEYLIKE = re.compile(
    r"""(?ix)
    \b([a-z0-9_]*(password|passwd|secret|token|api_?key|access_?key|private_?key|fernet_?key|jwt)[a-z0-9_]*)
    ["']?\s*[:=]\s*["']?([^\s"'#,;}]+)""",
)
PLACEHOLDERS = re.compile(
    r"(?i)^(change-?me.*|<.*>|\$\{.*\}?|\$[A-Z_]+|x+|\*+|none|null|true|false|testing|test|\.\.\.)$"
)


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def looks_secret(value: str) -> bool:
    """A long, varied value (a generated key or password), not a word, path, expression or placeholder."""
    if PLACEHOLDERS.match(value) or len(value) < 12:
        return False
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+(\(.*)?|[A-Za-z_]\w*\(.*", value):
        return False  # an attribute or a call: code, not a value
    if re.fullmatch(r"[a-z_]+|[A-Z_]+|[a-z]+(-[a-z]+)+", value):
        return False  # a snake_case, CONSTANT or kebab-case word
    if value.startswith(("/", "./", "~", "{", "[", "(", "$")) or "://" in value:
        return False  # a path, a URI (its credentials have their own pattern), an expression
    return _entropy(value) >= 3.3


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p and p != "requirements.lock"]  # the lock is hashes


def findings(text: str) -> list[str]:
    found = []
    for no, line in enumerate(text.splitlines(), 1):
        for name, pattern in TOKEN_FORMATS.items():
            if pattern.search(line):
                found.append(f"{no}: {name}")
        for m in KEYLIKE.finditer(line):
            if looks_secret(m.group(3)):
                found.append(f"{no}: {m.group(1)} has a key-like value")
    return found


def test_no_tracked_file_holds_a_credential():
    problems = []
    for path in tracked_files():
        try:
            text = (PROJECT_ROOT / path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        problems += [f"{path}:{f}" for f in findings(text)]
    assert problems == []


# Built by concatenation, so this file holds none of them verbatim (it is scanned too).
MUST_CATCH = [
    "AWS_ACCESS_KEY_ID=" + "AKIA" + "IOSFODNN7EXAMPLE",
    "-----BEGIN RSA " + "PRIVATE KEY-----",
    "token = " + "ghp_" + "0123456789abcdefghijABCDEFGHIJ012345",
    "MLFLOW_TRACKING_PASSWORD: " + '"q8Rv2LzP0w!mT7sK"',
    "AIRFLOW__CORE__FERNET_KEY=" + "Zx3kq9_0f1Yq2J8mN5bV7cX4zL6aS2dF1gH3jK5lM8o=",
    "sql_alchemy_conn = postgresql://airflow:" + "Sup3rS3cretPw@db/airflow",
    '{"password": "' + 'Xk9fQ2mLp8RzT4vW"}',
    "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "api_token=" + "9f86d081884c7d659a2feaa0c55ad015",
    "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiJhZG1pbiJ9.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    "-----BEGIN ENCRYPTED " + "PRIVATE KEY-----",
    "redis://:" + "pw12@redis:6379/0",
]


@pytest.mark.parametrize("line", MUST_CATCH)
def test_the_scanner_catches_what_it_must(line):
    assert findings(line)


@pytest.mark.parametrize(
    "line",
    [
        "AWS_SECRET_ACCESS_KEY=change-me",
        "MLFLOW_TRACKING_PASSWORD=${MLFLOW_TRACKING_PASSWORD}",
        'monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")',
        "secret_key = settings.secret_key",
        "postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres/airflow",
        "password_file: /opt/airflow/simple_auth_manager_passwords.json",
        '"jwt_secret": secrets.token_urlsafe(32),',
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE: /opt/airflow/passwords/passwords.json",
        "token = self.api_token()",
        "MLFLOW_TRACKING_PASSWORD: ${MLFLOW_ADMIN_PASSWORD}",
    ],
)
def test_the_scanner_lets_placeholders_pass(line):
    assert findings(line) == []
