"""Storage under one root: a local folder or ``s3://bucket/prefix``.

A small adapter: :class:`LocalStorage` and :class:`S3Storage` share one
interface chosen by ``PIPELINES_DATA_ROOT``. Keys are relative POSIX paths
under the root and are validated, so nothing can escape it. Every write is
atomic: a temp file renamed into place locally, one PUT per object on S3 (an
S3 object is never visible half-written). Which key holds what is the
catalog's business (:mod:`pipelines.core.catalog`), not the adapter's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError, MissingInput
from pipelines.core.settings import Settings, get_settings

if TYPE_CHECKING:
    import pyarrow as pa

_SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._=-]{0,254}")


def check_key(key: str) -> str:
    """Validate a storage key: relative, no ``..``, safe characters only.

    Raises:
        ConfigError: the key is empty, absolute, or has an unsafe segment.
    """
    if not isinstance(key, str) or not key or key.startswith("/"):
        raise ConfigError(f"invalid storage key {key!r}")
    for segment in key.rstrip("/").split("/"):
        if not _SEGMENT_RE.fullmatch(segment):
            raise ConfigError(f"invalid storage key {key!r}: unsafe segment {segment!r}")
    return key


class Storage(ABC):
    """Byte and table access under one root."""

    root: str

    @abstractmethod
    def uri(self, key: str) -> str:
        """Absolute URI of a key (``file://`` path or ``s3://``)."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Read an object; :class:`MissingInput` when absent."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> str:
        """Write an object atomically and return its URI."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under a prefix folder, recursively, sorted."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object exists."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under a prefix folder; returns the count."""

    @abstractmethod
    def size(self, key: str) -> int:
        """Object size in bytes."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object (nothing happens if it does not exist)."""

    # Shared helpers built on the primitives.
    def write_json(self, key: str, obj: Any) -> str:
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8")
        return self.write_bytes(key, data)

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def write_text(self, key: str, text: str) -> str:
        return self.write_bytes(key, text.encode("utf-8"))

    def write_parquet(self, key: str, table: pa.Table, **kwargs: Any) -> str:
        """Write a table as one Parquet object (zstd, statistics on)."""
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        kwargs.setdefault("compression", "zstd")
        pq.write_table(table, buf, **kwargs)
        return self.write_bytes(key, buf.getvalue())

    def read_parquet(self, key: str) -> pa.Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pq.read_table(pa.BufferReader(self.read_bytes(key)))

    def key_of(self, uri: str) -> str | None:
        """The key behind one of this storage's URIs (``None`` when the URI is elsewhere)."""
        root = self.uri("x")[:-1]  # the root's URI, with its trailing slash
        return uri[len(root) :].rstrip("/") if uri.startswith(root) and len(uri) > len(root) else None

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[str]:
        """A local path for an object, for readers that need a file: a streamed download into a temp folder."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="pipelines-") as tmp:
            path = os.path.join(tmp, PurePosixPath(key).name)
            self.download(key, path)
            yield path

    @abstractmethod
    def download(self, key: str, path: str) -> None:
        """Copy an object to a local file, streaming (memory does not grow with its size)."""

    @abstractmethod
    def upload(self, key: str, path: str) -> str:
        """Publish a local file as one object, atomically: readers see the old object or the new one."""


class LocalStorage(Storage):
    """Storage in a local folder; writes are temp file + fsync + rename."""

    def __init__(self, root: str | Path):
        self.root = str(Path(root).resolve())

    def _path(self, key: str) -> Path:
        path = Path(self.root, *PurePosixPath(check_key(key)).parts)
        return path

    def uri(self, key: str) -> str:
        # Keys are validated to safe characters, so no percent-encoding is
        # needed and the URI stays readable (``ds=`` rather than ``ds%3D``).
        return f"file://{self._path(key)}"

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        # A symlink in landing/ must not pull files from outside the root
        # (say ~/.aws/credentials) into quarantine/ where readers can see them.
        if path.is_symlink() and not path.resolve().is_relative_to(Path(self.root).resolve()):
            raise ConfigError(f"refusing to read {self.uri(key)}: a symlink out of the storage root")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise MissingInput(f"not found: {self.uri(key)}") from None

    def _replace(self, key: str, fill: Any) -> str:
        """Atomically replace the file behind ``key``: ``fill(tmp_path)`` writes a sibling temp file,
        which is fsynced and renamed over the target (the rename made durable too)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            fill(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            tmp.unlink(missing_ok=True)
        return f"file://{path}"

    def write_bytes(self, key: str, data: bytes) -> str:
        return self._replace(key, lambda tmp: tmp.write_bytes(data))

    def local_path(self, key: str) -> Path:
        """The file behind a key (local storage only)."""
        return self._path(key)

    def local_pattern(self, pattern: str) -> str:
        """A glob over keys (say the catalog's ``parquet_glob``) as a path pattern, for readers such as DuckDB."""
        return str(Path(self.root, *PurePosixPath(pattern).parts))

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[str]:
        """The file itself: no copy (readers memory-map it)."""
        path = self._path(key)
        if not path.is_file():
            raise MissingInput(f"not found: {self.uri(key)}")
        yield str(path)

    def download(self, key: str, path: str) -> None:
        import shutil

        src = self._path(key)
        if not src.is_file():
            raise MissingInput(f"not found: {self.uri(key)}")
        shutil.copyfile(src, path)

    def upload(self, key: str, path: str) -> str:
        import shutil

        return self._replace(key, lambda tmp: shutil.copyfile(path, tmp))

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # an in-flight atomic write, not an object
                rel = Path(dirpath, name).relative_to(self.root)
                keys.append(rel.as_posix())
        return sorted(keys)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise MissingInput(f"not found: {self.uri(key)}") from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        # Walk the real files, not validated keys: a foreign name (a space,
        # .DS_Store) or a temp file left by a killed writer must go too.
        base = self._path(prefix)
        count = 0
        if base.is_dir():
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    Path(dirpath, name).unlink(missing_ok=True)
                    count += 1
        # Remove now-empty folders bottom-up so a replaced partition leaves no husk.
        if base.is_dir():
            for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
        return count


class S3Storage(Storage):
    """Storage in an S3 bucket prefix through boto3's credential chain.

    ``AWS_ENDPOINT_URL`` (or the profile's ``aws_endpoint_url``) points it at
    MinIO or a local S3 server. A single PUT per object is atomic on S3.
    """

    def __init__(self, root: str, endpoint_url: str | None = None, region: str | None = None):
        if not root.startswith("s3://"):
            raise ConfigError(f"not an s3 root: {root!r}")
        bucket, _, prefix = root[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(f"no bucket in {root!r}")
        self.root = root.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._endpoint_url = endpoint_url
        self._region = region
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self._endpoint_url,
                region_name=self._region,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}),
            )
        return self._client

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise MissingInput(f"not found: {self.uri(key)}") from None
            raise

    def write_bytes(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        return self.uri(key)

    def download(self, key: str, path: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), path)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise MissingInput(f"not found: {self.uri(key)}") from None
            raise

    def upload(self, key: str, path: str) -> str:
        # A multipart upload becomes visible only when it completes: atomic for readers.
        self.client.upload_file(path, self.bucket, self._key(key))
        return self.uri(key)

    def _list_raw(self, prefix: str) -> list[str]:
        full = self._key(prefix).rstrip("/") + "/"
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)

    def list(self, prefix: str) -> list[str]:
        return [self._rel(k) for k in self._list_raw(prefix)]

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def size(self, key: str) -> int:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise MissingInput(f"not found: {self.uri(key)}") from None
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))  # S3: no error when absent

    def delete_prefix(self, prefix: str) -> int:
        keys = self._list_raw(prefix)  # raw keys: foreign names are deleted too
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            resp = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise OSError(
                    f"S3 delete failed for {len(resp['Errors'])} object(s), e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
        return len(keys)


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a local file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def get_storage(settings: Settings | None = None) -> Storage:
    """The storage for the configured root."""
    settings = settings or get_settings()
    if settings.is_s3:
        return S3Storage(settings.data_root, settings.aws_endpoint_url, settings.s3_region)
    return LocalStorage(settings.data_root)
