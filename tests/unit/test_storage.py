"""LocalStorage and key validation (no server needed); which key holds what is tested in test_catalog.py."""

from __future__ import annotations

import datetime as dt
import os
import urllib.parse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core.errors import ConfigError, MissingInput
from pipelines.core.storage import LocalStorage, ObjectInfo, S3Storage, check_key, get_storage

KEY = "validated/flights/ds=2013-01-01/part-00000.parquet"


def _files_under(root: Path) -> list[str]:
    """Every file on disk under root (hidden ones included), relative, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _dirs_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir())


@pytest.fixture
def local(tmp_path) -> LocalStorage:
    root = tmp_path / "root"
    root.mkdir()
    return LocalStorage(root)


# --- key validation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "landing/flights/ds=2013-01-01/flights_JFK.csv",
        "quarantine/flights/ds=2013-01-01/_files.json",
        "reports/datasets/flights/ds=2013-01-01/validation.html",
        "scores/m-1/v2.0/x_y=z",
    ],
)
def test_check_key_accepts_safe_relative_keys(key):
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../x",
        "..",
        ".",
        "/abs",
        "/etc/passwd",
        "a//b",
        "a/../b",
        "a/./b",
        "a/..",
        "a\\b",
        "..\\x",
        "a b",
        " a",
        "a/b c.csv",
        "a%2F..",
        "a/%2e%2e/b",
        "a/.hidden",
        "a/b\n",
        "a/b\x00c",
        "s3://bucket/x",
        "file:///etc/passwd",
    ],
)
def test_check_key_rejects_unsafe_keys(key):
    with pytest.raises(ConfigError, match="invalid storage key"):
        check_key(key)


@pytest.mark.parametrize("key", [None, 1, b"a/b", Path("a/b")])
def test_check_key_rejects_non_strings(key):
    with pytest.raises(ConfigError):
        check_key(key)


# --- LocalStorage ---------------------------------------------------------------------------------------------------


def test_write_read_exists_size(local):
    assert not local.exists(KEY)
    uri = local.write_bytes(KEY, b"hello")
    assert uri == local.uri(KEY)
    assert local.read_bytes(KEY) == b"hello"
    assert local.exists(KEY)
    assert local.size(KEY) == 5
    assert not local.exists("validated/flights/ds=2013-01-01")  # a folder is not an object


def test_write_leaves_no_temp_file(local):
    local.write_bytes(KEY, b"x" * 10_000)
    local.write_bytes(KEY, b"y")
    assert _files_under(Path(local.root)) == [KEY]


def test_write_replaces_an_existing_object_whole(local):
    local.write_bytes(KEY, b"a much longer original payload " * 100)
    local.write_bytes(KEY, b"short")
    assert local.read_bytes(KEY) == b"short"
    assert local.size(KEY) == 5


def test_write_swaps_in_a_new_file_rather_than_rewriting_in_place(local):
    # Atomic rename: a reader that opened the old object keeps reading the old
    # bytes whole, never a truncated or mixed file.
    local.write_bytes(KEY, b"old content")
    path = Path(local.root, KEY)
    with open(path, "rb") as reader:
        local.write_bytes(KEY, b"new content, longer")
        assert reader.read() == b"old content"
    assert local.read_bytes(KEY) == b"new content, longer"


def test_crash_during_write_keeps_old_object_and_leaves_no_temp(local, monkeypatch):
    local.write_bytes(KEY, b"old content")

    def crash(src, dst):
        assert Path(src).exists(), "the new bytes must be fully written to a temp file first"
        assert Path(src).read_bytes() == b"new content"
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        local.write_bytes(KEY, b"new content")
    monkeypatch.undo()

    assert local.read_bytes(KEY) == b"old content"
    assert local.list("validated") == [KEY]
    assert not any(name.endswith(".tmp") for name in _files_under(Path(local.root)))


def test_crash_during_first_write_leaves_nothing(local, monkeypatch):
    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        local.write_bytes(KEY, b"data")
    monkeypatch.undo()
    assert not local.exists(KEY)
    assert local.list("validated") == []
    assert _files_under(Path(local.root)) == []


def test_list_ignores_in_flight_temp_files(local):
    local.write_bytes(KEY, b"done")
    # What a concurrent (or killed) writer leaves while it writes: ".<name>.<hex>.tmp".
    in_flight = Path(local.root, "validated/flights/ds=2013-01-01/.part-00001.parquet.0123abcd.tmp")
    in_flight.write_bytes(b"half")
    assert local.list("validated") == [KEY]
    assert local.list("validated/flights/ds=2013-01-01") == [KEY]


def test_list_is_recursive_sorted_and_relative_to_root(local):
    keys = [
        "landing/flights/ds=2013-01-02/b.csv",
        "landing/flights/ds=2013-01-01/z.csv",
        "landing/flights/ds=2013-01-01/a.csv",
        "landing/flights/ds=2013-01-01/sub/deeper/c.csv",
        "landing/flights/ds=2013-01-01/B.csv",
        "landing/other/ds=2013-01-01/x.csv",
        "validated/flights/ds=2013-01-01/part-00000.parquet",
    ]
    for k in keys:
        local.write_bytes(k, k.encode())
    flights = sorted(k for k in keys if k.startswith("landing/flights/"))
    assert local.list("landing/flights") == flights
    assert local.list("landing/flights/") == flights
    assert local.list("landing") == sorted(k for k in keys if k.startswith("landing/"))
    assert local.list("landing/flights/ds=2013-01-01") == [
        "landing/flights/ds=2013-01-01/B.csv",
        "landing/flights/ds=2013-01-01/a.csv",
        "landing/flights/ds=2013-01-01/sub/deeper/c.csv",
        "landing/flights/ds=2013-01-01/z.csv",
    ]
    assert all(local.read_bytes(k) == k.encode() for k in local.list("landing"))


def test_list_is_a_folder_prefix_not_a_string_prefix(local):
    local.write_bytes("a/b/x", b"1")
    local.write_bytes("a/bc/y", b"2")
    assert local.list("a/b") == ["a/b/x"]


def test_list_of_missing_prefix_or_of_an_object_is_empty(local):
    local.write_bytes(KEY, b"x")
    assert local.list("scores") == []
    assert local.list(KEY) == []


def test_delete_prefix_removes_objects_and_leaves_no_empty_folders(local):
    part = "validated/flights/ds=2013-01-01"
    for k in ["a.parquet", "b.parquet", "sub/c.json", "sub/deeper/d.json"]:
        local.write_bytes(f"{part}/{k}", b"x")
    local.write_bytes("validated/flights/ds=2013-01-02/keep.parquet", b"keep")
    local.write_bytes("validated/flights/ds=2013-01-011/keep.parquet", b"keep")  # string-prefix sibling

    assert local.delete_prefix(part) == 4

    assert local.list(part) == []
    assert not Path(local.root, part).exists(), "the partition folder must not stay as an empty husk"
    assert "validated/flights/ds=2013-01-01" not in _dirs_under(Path(local.root))
    assert local.list("validated") == [
        "validated/flights/ds=2013-01-011/keep.parquet",
        "validated/flights/ds=2013-01-02/keep.parquet",
    ]
    assert Path(local.root, "validated/flights").is_dir()


def test_delete_prefix_of_missing_prefix_is_zero(local):
    assert local.delete_prefix("validated/flights/ds=2013-01-01") == 0


def test_read_missing_key_raises_missing_input(local):
    with pytest.raises(MissingInput, match=r"not found: file://"):
        local.read_bytes("landing/flights/ds=2013-01-01/nope.csv")
    with pytest.raises(MissingInput):
        local.read_json("reports/datasets/flights/ds=2013-01-01/validation.json")
    with pytest.raises(MissingInput):
        local.read_parquet(KEY)
    assert MissingInput.exit_code == 5


@pytest.mark.parametrize("key", ["../escape", "/tmp/escape", "a/../../escape"])
def test_unsafe_keys_never_touch_the_filesystem(local, tmp_path, key):
    for op in (
        lambda: local.write_bytes(key, b"x"),
        lambda: local.read_bytes(key),
        lambda: local.exists(key),
        lambda: local.list(key),
        lambda: local.delete_prefix(key),
        lambda: local.uri(key),
    ):
        with pytest.raises(ConfigError):
            op()
    assert _files_under(tmp_path) == []


def test_parquet_round_trip(local):
    table = pa.table(
        {
            "i": pa.array([1, None, 3], pa.int64()),
            "f": pa.array([1.5, -0.0, None], pa.float64()),
            "s": pa.array(["a", None, "ü"], pa.string()),
            "t": pa.array([dt.datetime(2013, 1, 1, 5, 15, tzinfo=dt.UTC), None, None], pa.timestamp("us", tz="UTC")),
            "l": pa.array([["r1"], [], ["r1", "r2"]], pa.list_(pa.string())),
        }
    )
    uri = local.write_parquet(KEY, table)
    assert uri == local.uri(KEY)
    back = local.read_parquet(KEY)
    assert back.schema == table.schema
    assert back.equals(table)
    meta = pq.ParquetFile(Path(local.root, KEY)).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    # NaN never compares equal, so check it survives on its own.
    local.write_parquet(KEY, pa.table({"f": pa.array([float("nan")], pa.float64())}))
    assert str(local.read_parquet(KEY).column("f")[0].as_py()) == "nan"


def test_json_and_text_helpers(local):
    key = "reports/datasets/flights/ds=2013-01-01/validation.json"
    local.write_json(key, {"b": 1, "a": [1, 2], "when": dt.date(2013, 1, 1)})
    assert local.read_json(key) == {"a": [1, 2], "b": 1, "when": "2013-01-01"}
    local.write_text("reports/datasets/flights/ds=2013-01-01/validation.html", "<p>ü</p>")
    assert local.read_bytes("reports/datasets/flights/ds=2013-01-01/validation.html") == "<p>ü</p>".encode()


def test_uri_is_a_readable_file_uri(local):
    uri = local.uri(KEY)
    assert uri.startswith("file:///")
    assert uri == f"file://{Path(local.root).resolve()}/{KEY}"
    assert "ds=2013-01-01" in uri
    assert "%" not in uri
    local.write_bytes(KEY, b"x")
    assert Path(urllib.parse.urlparse(uri).path).read_bytes() == b"x"


def test_relative_root_is_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = LocalStorage("rel")
    assert storage.root == str(tmp_path.resolve() / "rel")
    storage.write_bytes("a/b", b"x")
    assert (tmp_path / "rel" / "a" / "b").read_bytes() == b"x"


def test_get_storage_picks_local_storage_for_a_path(data_root):
    storage = get_storage()
    assert isinstance(storage, LocalStorage)
    assert Path(storage.root) == data_root.resolve()


@pytest.mark.parametrize("root", ["/tmp/x", "s3://", "s3:///prefix", "gs://bucket/x"])
def test_s3_storage_rejects_bad_roots(root):
    with pytest.raises(ConfigError):
        S3Storage(root)


def test_s3_storage_keys_are_validated_before_any_request():
    # No endpoint is contacted: the key is rejected first.
    storage = S3Storage("s3://bucket/prefix/", endpoint_url="http://127.0.0.1:9")
    assert storage.root == "s3://bucket/prefix"
    assert storage.uri(KEY) == f"s3://bucket/prefix/{KEY}"
    assert S3Storage("s3://bucket").uri("a/b") == "s3://bucket/a/b"
    for key in ("../x", "/abs", "a//b"):
        with pytest.raises(ConfigError):
            storage.read_bytes(key)
        with pytest.raises(ConfigError):
            storage.write_bytes(key, b"x")


def test_delete_removes_one_object_only_and_a_missing_one_is_fine(local):
    local.write_bytes("scores/m/ds=2013-01-01/a.json", b"1")
    local.write_bytes("scores/m/ds=2013-01-01/ab.json", b"2")
    local.delete("scores/m/ds=2013-01-01/a.json")
    assert local.list("scores/m") == ["scores/m/ds=2013-01-01/ab.json"]
    local.delete("scores/m/ds=2013-01-01/a.json")  # already gone


def test_delete_rejects_unsafe_keys(local):
    with pytest.raises(ConfigError):
        local.delete("../outside")


def test_key_of_is_the_inverse_of_uri(local, tmp_path):
    assert local.key_of(local.uri(KEY)) == KEY
    assert local.key_of(local.uri("a")) == "a"
    assert local.key_of(f"file://{tmp_path / 'elsewhere' / 'x'}") is None
    assert local.key_of(f"file://{local.root}") is None  # the root itself is no key
    assert local.key_of(f"file://{local.root}x/y") is None  # a sibling folder sharing the root's name as prefix
    s3 = S3Storage("s3://bucket/prefix")
    assert s3.key_of(s3.uri(KEY)) == KEY
    assert s3.key_of("s3://bucket/prefixx/a") is None
    assert s3.key_of("s3://other/prefix/a") is None


def test_local_copy_of_local_storage_is_the_file_itself(local):
    local.write_bytes(KEY, b"hello")
    with local.local_copy(KEY) as path:
        assert path == str(local.local_path(KEY))
        assert Path(path).read_bytes() == b"hello"
    assert local.exists(KEY)  # nothing was moved or deleted
    with pytest.raises(MissingInput), local.local_copy("validated/flights/ds=2013-01-02/part-00000.parquet"):
        pass
    with pytest.raises(ConfigError), local.local_copy("../escape"):
        pass


def test_the_generic_local_copy_is_a_temporary_download(local, tmp_path):
    """What S3 gets: a streamed download into a temp folder, removed when the block ends."""
    from pipelines.core.storage import Storage

    local.write_bytes(KEY, b"hello")
    with Storage.local_copy(local, KEY) as path:
        assert Path(path).name == "part-00000.parquet"
        assert Path(path).read_bytes() == b"hello"
        assert not Path(path).is_relative_to(local.root)
    assert not Path(path).exists()
    assert local.read_bytes(KEY) == b"hello"


def test_sha256_file_streams_a_local_file(tmp_path):
    import hashlib

    from pipelines.core.storage import sha256_file

    path = tmp_path / "big.bin"
    data = os.urandom((1 << 20) * 2 + 17)  # more than one read block
    path.write_bytes(data)
    assert sha256_file(path) == sha256_file(str(path)) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


# --- symlinks: a key must resolve inside the root, whichever component is the link ---------------------------------

OUTSIDE = "resolves outside the storage root"


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder next to the root holding a secret the storage must never read, list, write or delete."""
    folder = tmp_path / "outside"
    (folder / "b").mkdir(parents=True)
    (folder / "b" / "c").write_bytes(b"aws_secret_access_key=...")
    (folder / "flights_JFK.csv").write_bytes(b"secret,rows\n")
    return folder


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Every path opened through ``open``/``io.open`` (``Path.read_bytes``, ``shutil.copyfile``), resolved."""
    import builtins
    import io

    seen: list[str] = []
    real_open = io.open

    def spy(file, *args, **kwargs):
        if isinstance(file, str | bytes | os.PathLike):
            seen.append(os.path.realpath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    return seen


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under a folder with its size and mtime, from stat alone (no open: the spy stays clean)."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_partition_folder_symlinked_out_of_the_root_is_neither_listed_nor_read(local, outside, opened):
    # The incident: landing/flights/ds=... was a symlink to a folder elsewhere; its files were
    # listed, read and copied to quarantine/.
    part = Path(local.root, "landing/flights/ds=2013-01-01")
    part.parent.mkdir(parents=True)
    part.symlink_to(outside, target_is_directory=True)
    local.write_bytes("landing/flights/ds=2013-01-02/ok.csv", b"a\n")
    key = "landing/flights/ds=2013-01-01/flights_JFK.csv"
    before = _snapshot(outside)

    for prefix in ("landing", "landing/flights", "landing/flights/ds=2013-01-01"):
        with pytest.raises(ConfigError, match=OUTSIDE):
            local.list(prefix)
        with pytest.raises(ConfigError, match=OUTSIDE):
            local.list_info(prefix)
    with pytest.raises(ConfigError, match=f"file://{part}.*{OUTSIDE}"):
        local.list("landing/flights")
    with pytest.raises(ConfigError, match=f"refusing {local.uri(key)}: it {OUTSIDE}"):
        local.read_bytes(key)
    for op in (local.info, local.size, local.exists, local.local_path, local.read_parquet):
        with pytest.raises(ConfigError, match=OUTSIDE):
            op(key)
    with pytest.raises(ConfigError, match=OUTSIDE):
        local.download(key, str(Path(local.root).parent / "copy"))
    with pytest.raises(ConfigError, match=OUTSIDE), local.local_copy(key):
        pass

    assert not [p for p in opened if Path(p).is_relative_to(outside)], "a file outside the root was opened"
    assert not (Path(local.root).parent / "copy").exists()
    assert _snapshot(outside) == before
    assert local.list("landing/flights/ds=2013-01-02") == ["landing/flights/ds=2013-01-02/ok.csv"]


def test_a_file_symlinked_out_of_the_root_is_refused(local, outside, opened):
    key = "landing/flights/ds=2013-01-01/x.csv"
    local.write_bytes("landing/flights/ds=2013-01-01/ok.csv", b"a\n")
    Path(local.root, key).symlink_to(outside / "b" / "c")
    with pytest.raises(ConfigError, match=f"refusing {local.uri(key)}: it {OUTSIDE}"):
        local.read_bytes(key)
    for op in (local.info, local.exists, local.size, local.delete):
        with pytest.raises(ConfigError, match=OUTSIDE):
            op(key)
    for op in (local.list, local.list_info):
        with pytest.raises(ConfigError, match=f"file://{Path(local.root, key)}.*{OUTSIDE}"):
            op("landing/flights")
    with pytest.raises(ConfigError, match=OUTSIDE):
        local.write_bytes(key, b"overwrite")
    assert not [p for p in opened if Path(p).is_relative_to(outside)]
    assert (outside / "b" / "c").read_bytes() == b"aws_secret_access_key=..."
    assert Path(local.root, key).is_symlink()  # refused, not silently replaced either


def test_an_intermediate_folder_symlinked_out_of_the_root_is_refused_for_every_operation(local, outside, opened):
    # root/a -> outside, so the key a/b/c names outside/b/c although no segment of it is "..".
    Path(local.root, "a").symlink_to(outside, target_is_directory=True)
    before = _snapshot(outside)
    key = "a/b/c"
    src = Path(local.root).parent / "upload.bin"
    src.write_bytes(b"new")
    operations = {
        "read_bytes": lambda: local.read_bytes(key),
        "write_bytes": lambda: local.write_bytes(key, b"overwritten"),
        "write_new": lambda: local.write_bytes("a/b/new.json", b"{}"),
        "upload": lambda: local.upload(key, str(src)),
        "exists": lambda: local.exists(key),
        "size": lambda: local.size(key),
        "info": lambda: local.info(key),
        "list": lambda: local.list("a/b"),
        "list_top": lambda: local.list("a"),
        "list_info": lambda: local.list_info("a/b"),
        "delete": lambda: local.delete(key),
        "delete_prefix": lambda: local.delete_prefix("a/b"),
        "delete_prefix_top": lambda: local.delete_prefix("a"),
    }
    for name, op in operations.items():
        with pytest.raises(ConfigError, match=OUTSIDE):
            op()
            pytest.fail(f"{name} did not refuse")
    with pytest.raises(ConfigError, match=f"refusing {local.uri(key)}: it {OUTSIDE}"):
        local.read_bytes(key)

    assert not [p for p in opened if Path(p).is_relative_to(outside)], "a file outside the root was opened"
    assert _snapshot(outside) == before, "a file outside the root was written or deleted"
    assert (outside / "b" / "c").read_bytes() == b"aws_secret_access_key=..."


def test_delete_prefix_unlinks_symlinks_and_never_deletes_through_them(local, outside):
    local.write_bytes("archive/ds=1/kept.csv", b"kept")
    part = "validated/flights/ds=2013-01-01"
    local.write_bytes(f"{part}/a.parquet", b"x")
    folder = Path(local.root, part)
    (folder / "out_dir").symlink_to(outside, target_is_directory=True)  # a link out: unlinked, never followed
    (folder / "out_file").symlink_to(outside / "b" / "c")
    (folder / "in_dir").symlink_to(Path(local.root, "archive/ds=1"), target_is_directory=True)
    before = _snapshot(outside)

    assert local.delete_prefix(part) == 4  # one file and three links
    assert not folder.exists()
    assert _snapshot(outside) == before
    assert local.read_bytes("archive/ds=1/kept.csv") == b"kept"

    # A prefix that is itself a symlinked folder inside the root: the link goes, its target stays.
    linked = Path(local.root, "validated/flights/ds=2013-01-02")
    linked.symlink_to(Path(local.root, "archive/ds=1"), target_is_directory=True)
    assert local.list("validated/flights/ds=2013-01-02") == ["validated/flights/ds=2013-01-02/kept.csv"]
    assert local.delete_prefix("validated/flights/ds=2013-01-02") == 1
    assert not linked.exists() and not linked.is_symlink()
    assert local.list("archive") == ["archive/ds=1/kept.csv"]
    assert local.delete_prefix("archive/ds=1/kept.csv") == 0  # an object is not a folder


def test_symlinks_that_stay_inside_the_root_are_followed(local):
    local.write_bytes("archive/2013-01-01/a.csv", b"a")
    local.write_bytes("archive/2013-01-01/sub/b.csv", b"b")
    local.write_bytes("archive/extra/c.csv", b"c")
    local.write_bytes("landing/flights/ds=2013-01-02/own.csv", b"own")
    flights = Path(local.root, "landing/flights")
    (flights / "ds=2013-01-01").symlink_to("../../archive/2013-01-01", target_is_directory=True)  # relative link
    (flights / "ds=2013-01-02" / "more").symlink_to(Path(local.root, "archive/extra"), target_is_directory=True)
    (flights / "ds=2013-01-02" / "alias.csv").symlink_to(Path(local.root, "archive/extra/c.csv"))

    expected = [
        "landing/flights/ds=2013-01-01/a.csv",
        "landing/flights/ds=2013-01-01/sub/b.csv",
        "landing/flights/ds=2013-01-02/alias.csv",
        "landing/flights/ds=2013-01-02/more/c.csv",
        "landing/flights/ds=2013-01-02/own.csv",
    ]
    assert local.list("landing/flights") == expected
    assert local.list("landing/flights/ds=2013-01-01") == expected[:2]
    assert [i.key for i in local.list_info("landing/flights")] == expected
    assert [local.read_bytes(k) for k in expected] == [b"a", b"b", b"c", b"c", b"own"]
    assert local.exists("landing/flights/ds=2013-01-02/more/c.csv")
    local.write_bytes("landing/flights/ds=2013-01-01/new.csv", b"n")  # through the link, into archive/
    assert local.read_bytes("archive/2013-01-01/new.csv") == b"n"


@pytest.mark.timeout(30)
def test_a_symlink_cycle_inside_the_root_does_not_hang_the_listing(local):
    local.write_bytes("a/x.txt", b"x")
    local.write_bytes("a/b/y.txt", b"y")
    local.write_bytes("p/q.txt", b"q")
    a = Path(local.root, "a")
    (a / "self").symlink_to(".", target_is_directory=True)
    (a / "b" / "up").symlink_to("..", target_is_directory=True)
    (a / "b" / "to_p").symlink_to(Path(local.root, "p"), target_is_directory=True)
    Path(local.root, "p", "to_a").symlink_to(a, target_is_directory=True)  # a -> b -> p -> a
    (a / "loop1").symlink_to(a / "loop2")  # a symlink loop: not a file, not a folder
    (a / "loop2").symlink_to(a / "loop1")

    assert local.list("a") == ["a/b/to_p/q.txt", "a/b/y.txt", "a/x.txt"]
    assert local.list("a/b") == [
        "a/b/to_p/q.txt",
        "a/b/to_p/to_a/x.txt",
        "a/b/up/x.txt",
        "a/b/y.txt",
    ]
    assert [i.key for i in local.list_info("a")] == local.list("a")
    assert local.delete_prefix("a") == 7  # three files, four links; p/ and its file stay
    assert local.list("p") == ["p/q.txt"]


# --- object metadata -----------------------------------------------------------------------------------------------


def test_list_info_matches_os_stat_in_key_order(local):
    keys = {
        "landing/flights/ds=2013-01-01/z.csv": b"zz",
        "landing/flights/ds=2013-01-01/_SUCCESS": b"",
        "landing/flights/ds=2013-01-01/a.csv": b"a" * 1000,
        "landing/flights/ds=2013-01-01/sub/b.csv": b"bbb",
    }
    base_ns = 1_700_000_000_123_456_789
    for i, (key, data) in enumerate(keys.items()):
        local.write_bytes(key, data)
        os.utime(Path(local.root, key), ns=(base_ns + i * 1_000_000_007, base_ns + i * 1_000_000_007))
    Path(local.root, "landing/flights/ds=2013-01-01/.a.csv.0123abcd.tmp").write_bytes(b"half")

    infos = local.list_info("landing/flights")
    assert [i.key for i in infos] == sorted(keys) == local.list("landing/flights")
    for info in infos:
        st = os.stat(Path(local.root, info.key))
        ns = max(st.st_mtime_ns, st.st_ctime_ns)
        assert info == ObjectInfo(info.key, st.st_size, ns / 1e9, None, ns)
        assert info.size == len(keys[info.key])
        assert info == local.info(info.key)
    assert local.list_info("scores") == []
    assert local.list_info("landing/flights/ds=2013-01-01/a.csv") == []  # an object is not a folder


def test_info_of_a_missing_key_or_a_folder_raises_missing_input(local):
    local.write_bytes(KEY, b"x")
    with pytest.raises(MissingInput, match=r"not found: file://"):
        local.info("validated/flights/ds=2013-01-02/part-00000.parquet")
    with pytest.raises(MissingInput):
        local.info("validated/flights/ds=2013-01-01")
    with pytest.raises(MissingInput):
        local.info(f"{KEY}/below-a-file")
    with pytest.raises(ConfigError):
        local.info("../escape")


def test_modified_increases_when_a_file_is_rewritten(local):
    path = Path(local.root, KEY)
    local.write_bytes(KEY, b"first")
    hour_ago = int((dt.datetime.now(dt.UTC).timestamp() - 3600) * 1e9)
    os.utime(path, ns=(hour_ago, hour_ago))  # as `cp -p` or `rsync -a` leave a copy
    first = local.info(KEY)
    # An old mtime carried into a new copy does not make it old: its inode changed now.
    assert first.modified == path.stat().st_ctime_ns / 1e9 > hour_ago / 1e9

    local.write_bytes(KEY, b"second, longer")  # a new file renamed into place: a fresh mtime
    second = local.info(KEY)
    assert second.modified > first.modified
    assert second.size == len(b"second, longer")
    assert local.list_info("validated") == [second]

    later = hour_ago + 7_200_000_000_001
    os.utime(path, ns=(later, later))
    assert local.info(KEY).modified == later / 1e9 > second.modified


def test_s3_info_and_list_info_agree_on_whole_seconds(monkeypatch):
    """HEAD's Last-Modified has whole seconds, a MinIO listing has milliseconds: both are floored."""
    from botocore.stub import Stubber

    for var in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    storage = S3Storage("s3://bucket/root", endpoint_url="http://127.0.0.1:9", region="us-east-1")
    listed = dt.datetime(2013, 1, 1, 5, 15, 30, 700_000, tzinfo=dt.UTC)
    headed = listed.replace(microsecond=0)
    with Stubber(storage.client) as stub:
        stub.add_response(
            "list_objects_v2",
            {"Contents": [{"Key": f"root/{KEY}", "Size": 5, "LastModified": listed, "ETag": '"abc-2"'}]},
            {"Bucket": "bucket", "Prefix": "root/validated/"},
        )
        stub.add_response(
            "head_object",
            {"ContentLength": 5, "LastModified": headed, "ETag": '"abc-2"'},
            {"Bucket": "bucket", "Key": f"root/{KEY}"},
        )
        listed_info = storage.list_info("validated")
        head_info = storage.info(KEY)
        stub.assert_no_pending_responses()
    assert listed_info == [ObjectInfo(KEY, 5, headed.timestamp(), "abc-2", int(headed.timestamp()) * 10**9)]
    assert head_info == listed_info[0]
