"""S3 traffic proportional to the work, on the S3 protocol server: a chunk reads only its row groups, with a
number of requests that does not grow with the partition or the plan; a failed multipart upload leaves nothing.

The large version (5M rows in 50 chunk tasks, bytes and requests per task) is ``make bench-scale``.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core.errors import ConditionFailed
from pipelines.core.storage import S3Storage, get_storage, version_of
from pipelines.scoring.chunks import ChunkReader
from pipelines.scoring.plan import plan_chunks

GROUP = 5_000
KEY = "validated/flights/ds=2013-06-15/part-0.parquet"


@pytest.fixture
def s3(s3_root) -> S3Storage:
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    return storage


class Traffic:
    """Counts the requests one storage client sends, and the body bytes its GETs return."""

    def __init__(self, storage: S3Storage):
        self.requests: list[str] = []
        self.bytes = 0
        storage.client.meta.events.register("before-call.s3", self._call)
        storage.client.meta.events.register("after-call.s3.GetObject", self._got)

    def _call(self, model, **kwargs):
        self.requests.append(model.name)

    def _got(self, http_response, **kwargs):
        self.bytes += int(http_response.headers.get("content-length", 0))

    def reset(self) -> None:
        self.requests, self.bytes = [], 0


def partition(groups: int) -> bytes:
    """A validated-like partition: ``groups`` row groups of ``GROUP`` rows, incompressible text."""
    import numpy as np

    rng = np.random.default_rng(groups)
    n = groups * GROUP
    table = pa.table(
        {
            "flight": pa.array(np.arange(n)),
            "dest": pa.array(rng.integers(0, 1 << 40, n).astype(str)),
            "distance": pa.array(rng.random(n)),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=GROUP, compression="zstd")
    return buf.getvalue()


def chunk_traffic(s3: S3Storage, traffic: Traffic, groups: int, chunk_rows: int, index: int) -> tuple[int, int, int]:
    """(requests, bytes fetched, bytes of the chunk's share) for reading one chunk as a chunk task does."""
    data = partition(groups)
    s3.write_bytes(KEY, data)
    reader = ChunkReader(io.BytesIO(data))
    plan = plan_chunks(reader.num_rows, chunk_rows, [rows for _, rows in reader.bounds])
    chunk = plan[index]
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    first, last = chunk["start"] // GROUP, (chunk["start"] + chunk["rows"] - 1) // GROUP
    share = sum(
        meta.row_group(g).column(c).total_compressed_size
        for g in range(first, last + 1)
        for c in range(meta.num_columns)
    )
    version = version_of(s3.info(KEY))
    traffic.reset()
    with s3.open_version(KEY, version) as fh:
        rows = ChunkReader(fh).read(chunk["start"], chunk["rows"])
    assert rows.column("flight").to_pylist() == list(range(chunk["start"], chunk["start"] + chunk["rows"]))
    return len(traffic.requests), traffic.bytes, share


def test_a_chunk_fetches_its_row_groups_with_requests_that_do_not_grow(s3):
    traffic = Traffic(s3)
    small = chunk_traffic(s3, traffic, groups=4, chunk_rows=2 * GROUP, index=1)
    large = chunk_traffic(s3, traffic, groups=40, chunk_rows=2 * GROUP, index=13)
    for _requests, fetched, share in (small, large):
        assert fetched <= 1.2 * share + 64 * 1024, (fetched, share)  # its groups, the footer and little else
    assert large[0] == small[0], (small, large)  # ten times the groups, the chunks: the same requests


def test_a_chunk_never_reads_another_version_of_its_input(s3):
    s3.write_bytes(KEY, partition(4))
    version = version_of(s3.info(KEY))
    with s3.open_version(KEY, version) as fh:
        reader = ChunkReader(fh)
        s3.write_bytes(KEY, partition(5))  # re-validated while the chunk task runs
        with pytest.raises(ConditionFailed):
            reader.read(GROUP, GROUP)
    with pytest.raises(ConditionFailed):
        s3.open_version(KEY, version)


def test_a_failed_multipart_upload_is_aborted_and_leaves_no_object(s3, s3_client, tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (20 << 20))  # above boto3's multipart threshold (8 MiB)
    parts = []

    def fail_second_part(params, **kwargs):
        parts.append(params["PartNumber"])
        if params["PartNumber"] == 2:
            raise OSError(28, "No space left on device")

    s3.client.meta.events.register("before-parameter-build.s3.UploadPart", fail_second_part)
    with pytest.raises(Exception, match="No space left"):
        s3.upload("validated/big.bin", str(path))
    assert parts, "no multipart upload was made"
    assert not s3.exists("validated/big.bin")
    uploads = s3_client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert uploads == [], f"{len(uploads)} multipart upload(s) left open"


def test_a_server_that_ignores_if_match_cannot_hand_over_another_version(s3, monkeypatch):
    s3.write_bytes(KEY, partition(4))
    version = version_of(s3.info(KEY))
    real = s3.client.get_object

    def ignoring_if_match(**kwargs):  # a proxy that drops the condition
        kwargs.pop("IfMatch", None)
        return real(**kwargs)

    with s3.open_version(KEY, version) as fh:
        reader = ChunkReader(fh)
        s3.write_bytes(KEY, partition(4))  # the same bytes again
        assert version_of(s3.info(KEY)) == version  # content-addressed: the same bytes are the same version
        s3.write_bytes(KEY, partition(5))
        monkeypatch.setattr(s3.client, "get_object", ignoring_if_match)
        with pytest.raises(ConditionFailed):
            reader.read(GROUP, GROUP)


def test_a_local_file_replaced_by_another_is_another_version(tmp_path):
    import os

    from pipelines.core.storage import LocalStorage

    local = LocalStorage(tmp_path)
    local.write_bytes(KEY, b"a" * 100)
    version = version_of(local.info(KEY))
    fh = local.open_version(KEY, version)
    st = os.stat(local.local_path(KEY))
    local.write_bytes(KEY, b"b" * 100)  # same size; maybe the same clock tick
    os.utime(local.local_path(KEY), ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fh.read() == b"a" * 100  # the open version reads on, whole
    fh.close()
    assert version_of(local.info(KEY)) != version
    with pytest.raises(ConditionFailed):
        local.open_version(KEY, version)
