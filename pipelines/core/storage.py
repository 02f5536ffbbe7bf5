"""Storage under one root: a local folder or ``s3://bucket/prefix``.

A small adapter: :class:`LocalStorage` and :class:`S3Storage` share one
interface chosen by ``PIPELINES_DATA_ROOT``. Keys are relative POSIX paths
under the root and are validated, so nothing can escape it. Every write is
atomic: a temp file renamed into place locally, one PUT per object on S3 (an
S3 object is never visible half-written). Which key holds what is the
catalog's business (:mod:`pipelines.core.catalog`), not the adapter's.

Locally, a key must also *resolve* under the root: a symlink anywhere on its
path (a ``ds=`` folder, an intermediate folder, the file itself) that leads
out of the root is refused with :class:`ConfigError`, while symlinks that stay
inside the root work, listing included.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import re
import stat
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConditionFailed, ConfigError, MissingInput
from pipelines.core.settings import Settings, get_settings

if TYPE_CHECKING:
    import pyarrow as pa

_CLIENT_LOCK = threading.Lock()
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


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing knows of one object: enough to bind a delivery to its ready marker.

    Attributes:
        key: the storage key, as :meth:`Storage.list` returns it.
        size: bytes.
        modified: last-modified time, seconds since the epoch (local: the later of mtime and ctime;
            S3: ``LastModified`` in whole seconds, the precision of HEAD's ``Last-Modified``
            header, so that :meth:`Storage.info` and :meth:`Storage.list_info` agree).
        etag: the S3 ETag without its quotes (an MD5 only for single-part uploads); ``None`` locally.
    """

    key: str
    size: int
    modified: float
    etag: str | None = None
    #: ``modified`` in whole nanoseconds, exact (a float of seconds cannot tell 1 ns apart): compare these.
    modified_ns: int = 0
    #: Locally, the file's device and inode: a replaced file is another inode, whatever its size and times.
    inode: tuple[int, int] | None = field(default=None, compare=False)


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
    def open_version(self, key: str, version: str) -> Any:
        """A seekable binary file of the object as it is at ``version`` (:func:`version_of` its info), read
        in ranges as it is consumed (on S3, one ranged GET per read: a reader fetches only what it reads).

        Raises:
            ConditionFailed: the object is at another version now, or changes while it is read.
            MissingInput: it is gone.
        """

    @abstractmethod
    def open_read(self, key: str) -> Any:
        """A binary stream of an object (``read(n)``, ``close()``), read as it is consumed; :class:`MissingInput`
        when absent."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under a prefix folder, recursively, sorted."""

    @abstractmethod
    def list_info(self, prefix: str) -> list[ObjectInfo]:
        """:class:`ObjectInfo` of the keys :meth:`list` returns, in the same (key) order."""

    @abstractmethod
    def info(self, key: str) -> ObjectInfo:
        """One object's :class:`ObjectInfo`; :class:`MissingInput` when absent."""

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

    def fence(self, key: str) -> str | None:
        """The object's current version, for :meth:`replace_if` (``""`` when absent).

        ``None`` locally: a local root is locked with kernel locks, which no other process can take
        over while the holder lives, so a local write needs no fence.
        """
        return None

    def replace_if(self, key: str, fence: str | None, *, path: str | None = None, data: bytes | None = None) -> str:
        """Replace an object only if it is still at version ``fence`` (see :meth:`fence`).

        Raises:
            ConditionFailed: another writer replaced (or created, or deleted) the object meanwhile.
        """
        if path is not None:
            return self.upload(key, path)
        return self.write_bytes(key, data or b"")

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
        return self.write_bytes(key, parquet_bytes(table, **kwargs))

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
    """Storage in a local folder; writes are temp file + fsync + rename.

    Every key is resolved (symlinks followed) before use and refused with
    :class:`ConfigError` when it lands outside the (resolved) root, whichever
    path component is the symlink. Symlinks inside the root keep working:
    listing follows symlinked folders that stay inside (each folder at most
    once along a path, so a cycle cannot hang it) and refuses ones that leave.
    """

    def __init__(self, root: str | Path):
        self.root = str(Path(root).resolve())  # resolved: the reference every key is checked against

    def _join(self, key: str) -> Path:
        """The path a key names, unresolved (no filesystem access)."""
        return Path(self.root, *PurePosixPath(check_key(key)).parts)

    def _inside(self, real: str) -> bool:
        return os.path.commonpath([self.root, real]) == self.root

    def _resolve_inside(self, path: str | Path) -> str:
        """``path`` resolved; :class:`ConfigError` when that is outside the root."""
        real = os.path.realpath(path)
        if not self._inside(real):
            raise ConfigError(
                f"refusing file://{path}: it resolves outside the storage root {self.root} "
                f"(to {real}, through a symlink)"
            )
        return real

    def _path(self, key: str) -> Path:
        """The path behind a key, checked to resolve inside the root (every key-to-path mapping goes here)."""
        path = self._join(key)
        self._resolve_inside(path)
        return path

    def uri(self, key: str) -> str:
        # A name, not an access: not resolved, so a refused key can still be named in errors.
        # Keys are validated to safe characters, so no percent-encoding is needed and the URI
        # stays readable (``ds=`` rather than ``ds%3D``).
        return f"file://{self._join(key)}"

    def read_bytes(self, key: str) -> bytes:
        # _path refuses a symlink out of the root, so a file from outside (say
        # ~/.aws/credentials) is never pulled into quarantine/ where readers can see it.
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise MissingInput(f"not found: {self.uri(key)}") from None

    def open_version(self, key: str, version: str) -> Any:
        fh = self.open_read(key)
        # The open file is the inode it opened: an atomic replace after this does not change what it reads.
        found = version_of(_local_info(key, os.fstat(fh.fileno())))
        if found != version:
            fh.close()
            raise ConditionFailed(f"{self.uri(key)} is at version {found}, not {version}")
        return fh

    def open_read(self, key: str) -> Any:
        path = self._path(key)
        try:
            return open(path, "rb")  # the caller closes it
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

    def _scan(self, prefix: str) -> list[tuple[str, str]]:
        """``(key, path)`` of every file under a prefix folder, sorted by key.

        Follows symlinked folders that resolve inside the root, each real folder
        at most once along one path (a cycle is cut where it closes); a symlink
        (folder or file) that resolves outside the root raises :class:`ConfigError`.
        In-flight temp files (``.<name>.<hex>.tmp``) and dangling symlinks are no objects.
        """
        base = self._path(prefix)
        if not base.is_dir():
            return []
        found = []
        stack = [(str(base), (os.path.realpath(base),))]  # (folder, real paths of it and its ancestors)
        while stack:
            folder, chain = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked
            for entry in entries:
                real = os.path.join(chain[-1], entry.name)
                if entry.is_symlink():
                    real = self._resolve_inside(entry.path)
                try:
                    is_dir = entry.is_dir()
                except OSError as exc:
                    if exc.errno != errno.ELOOP:
                        raise
                    continue  # a symlink loop: neither a file nor a folder
                if is_dir:
                    if real not in chain:
                        stack.append((entry.path, (*chain, real)))
                elif entry.is_file() and not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                    found.append((Path(entry.path).relative_to(self.root).as_posix(), entry.path))
        return sorted(found)

    def list(self, prefix: str) -> list[str]:
        return [key for key, _path in self._scan(prefix)]

    def list_info(self, prefix: str) -> list[ObjectInfo]:
        out = []
        for key, path in self._scan(prefix):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue  # deleted since the scan
            out.append(_local_info(key, st))
        return out

    def info(self, key: str) -> ObjectInfo:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):  # a folder is no object either
            raise MissingInput(f"not found: {self.uri(key)}")
        return _local_info(key, st)

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
        """Delete everything under a prefix folder and the emptied folders; returns the entries removed.

        Walks the real files, not validated keys: a foreign name (a space,
        .DS_Store) or a temp file left by a killed writer must go too. Symlinks
        are never followed: a symlink (to a file or a folder, wherever it
        points) is unlinked itself, so nothing outside the prefix's own folders
        is touched, let alone outside the root. A prefix that is itself a
        symlinked folder (inside the root) is unlinked the same way.
        """
        base = self._path(prefix)
        if base.is_symlink():
            if not base.is_dir():
                return 0  # an object (or a dangling link), not a folder
            base.unlink()
            return 1
        if not base.is_dir():
            return 0
        count = 0
        # fwalk works on folder descriptors opened without following symlinks: a folder
        # swapped for a symlink while we walk is not entered.
        for _folder, dirs, files, dir_fd in os.fwalk(base, topdown=False, follow_symlinks=False):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=dir_fd)
                    count += 1
            for name in dirs:
                try:
                    if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                        os.unlink(name, dir_fd=dir_fd)
                        count += 1
                    else:
                        os.rmdir(name, dir_fd=dir_fd)  # emptied bottom-up: no husk is left
                except OSError:
                    pass  # not empty (written meanwhile) or already gone
        with contextlib.suppress(OSError):
            os.rmdir(base)
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
        """One boto3 client per adapter, made from its own session: boto3's default session is not safe to
        make clients from in several threads at once (a lock's heartbeat, concurrent gates), a client is."""
        if self._client is None:
            with _CLIENT_LOCK:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.session.Session().client(
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

    def open_version(self, key: str, version: str) -> Any:
        info = self.info(key)
        if version_of(info) != version:
            raise ConditionFailed(f"{self.uri(key)} is at version {version_of(info)}, not {version}")
        return S3RangeFile(self, key, info.size, info.etag or "")

    def open_read(self, key: str) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
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

    def fence(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return ""
            raise

    def replace_if(self, key: str, fence: str | None, *, path: str | None = None, data: bytes | None = None) -> str:
        """A conditional PUT (``If-Match`` the fence, or ``If-None-Match: *`` when it was absent): a writer
        that lost its lock without knowing it cannot overwrite what the new holder wrote. Objects above
        5 GiB need a multipart upload, which is not conditional here: they are uploaded plainly."""
        from botocore.exceptions import ClientError

        if fence is None:
            return super().replace_if(key, fence, path=path, data=data)
        size = os.path.getsize(path) if path is not None else len(data or b"")
        if size > 5 * 1024**3:
            return self.upload(key, path) if path is not None else self.write_bytes(key, data or b"")
        condition = {"IfMatch": fence} if fence else {"IfNoneMatch": "*"}
        try:
            if path is not None:
                with open(path, "rb") as fh:
                    self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=fh, **condition)
            else:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data or b"", **condition)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise ConditionFailed(
                    f"{self.uri(key)} was written by another process meanwhile; nothing overwritten"
                ) from None
            raise
        return self.uri(key)

    def _list_objects(self, prefix: str) -> list[dict[str, Any]]:
        """The ``Contents`` entries of every ListObjectsV2 page under a prefix folder, sorted by key."""
        full = self._key(prefix).rstrip("/") + "/"
        objects: list[dict[str, Any]] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            objects.extend(page.get("Contents", []))
        return sorted(objects, key=lambda obj: obj["Key"])

    def _list_raw(self, prefix: str) -> list[str]:
        return [obj["Key"] for obj in self._list_objects(prefix)]

    def list(self, prefix: str) -> list[str]:
        return [self._rel(k) for k in self._list_raw(prefix)]

    def list_info(self, prefix: str) -> list[ObjectInfo]:
        # A listing page already carries size, time and ETag: no HEAD per object.
        return [
            _s3_info(self._rel(obj["Key"]), obj["Size"], obj["LastModified"], obj.get("ETag"))
            for obj in self._list_objects(prefix)
        ]

    def info(self, key: str) -> ObjectInfo:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise MissingInput(f"not found: {self.uri(key)}") from None
            raise
        return _s3_info(key, head["ContentLength"], head["LastModified"], head.get("ETag"))

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


def version_of(info: ObjectInfo) -> str:
    """An object's version: its S3 ETag, or locally its file (device and inode: an atomic replace is a new
    file), size and time. A local version also changes with the file's metadata (a hard link, a chmod
    touch its time): that costs a re-plan, never a mix."""
    if info.etag:
        return info.etag
    inode = f"{info.inode[0]}.{info.inode[1]}:" if info.inode else ""
    return f"{inode}{info.size}:{info.modified_ns}"


class S3RangeFile(io.RawIOBase):
    """A seekable read-only view of one S3 object version: each read is one ranged GET ``If-Match`` its ETag,
    so a reader never mixes two versions (:class:`ConditionFailed` when the object changes)."""

    def __init__(self, storage: S3Storage, key: str, size: int, etag: str):
        super().__init__()
        self.storage, self.key, self.size, self.etag = storage, key, size, etag
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buf: Any) -> int:
        from botocore.exceptions import ClientError

        n = min(len(buf), self.size - self.pos)
        if n <= 0:
            return 0
        s3 = self.storage
        changed = ConditionFailed(f"{s3.uri(self.key)} changed while it was read")
        try:
            resp = s3.client.get_object(
                Bucket=s3.bucket,
                Key=s3._key(self.key),
                Range=f"bytes={self.pos}-{self.pos + n - 1}",
                IfMatch=f'"{self.etag}"',
            )
            body = resp["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise changed from None
            raise
        # A server (or proxy) that ignores If-Match or Range must not hand over another version's bytes.
        if str(resp.get("ETag", "")).strip('"') != self.etag or len(body) != n:
            raise changed
        buf[: len(body)] = body
        self.pos += len(body)
        return len(body)


def _s3_info(key: str, size: Any, last_modified: Any, etag: str | None) -> ObjectInfo:
    """An :class:`ObjectInfo` from S3's fields (``LastModified`` is a tz-aware datetime in boto3).

    The time is floored to whole seconds: HEAD's ``Last-Modified`` header has no more, while some
    servers (MinIO) list milliseconds. Unfloored, a file listed at ``t.3`` would look newer than a
    marker written at ``t.8`` whose HEAD says ``t.0``; floored, :meth:`~Storage.info` and
    :meth:`~Storage.list_info` always agree.
    """
    seconds = math.floor(last_modified.timestamp())
    return ObjectInfo(key, int(size), float(seconds), etag.strip('"') if etag else None, seconds * 1_000_000_000)


def _local_info(key: str, st: os.stat_result) -> ObjectInfo:
    """A local file's :class:`ObjectInfo`; its time is the later of its content's (mtime) and its inode's (ctime).

    ``cp -p`` or ``rsync -a`` carry an old mtime into a new copy, but the copy's
    ctime is when it landed (``utime`` cannot set it back), so a redelivery
    copied with preserved times still reads as newer than an older ready marker.
    """
    ns = max(st.st_mtime_ns, st.st_ctime_ns)
    return ObjectInfo(key, st.st_size, ns / 1e9, None, ns, (st.st_dev, st.st_ino))


def parquet_bytes(table: pa.Table, **kwargs: Any) -> bytes:
    """A table as the bytes :meth:`Storage.write_parquet` writes (zstd unless told otherwise)."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    kwargs.setdefault("compression", "zstd")
    pq.write_table(table, buf, **kwargs)
    return buf.getvalue()


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
