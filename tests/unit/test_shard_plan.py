"""How a day's files are split into shards: consecutive runs of whole files, never empty, about equal bytes."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from pipelines.core.config import IngestConfig
from pipelines.ingest.shards import plan


def delivery(sizes: list[int]) -> SimpleNamespace:
    files = [SimpleNamespace(key=f"f{i}") for i in range(len(sizes))]
    return SimpleNamespace(files=files, sizes={f.key: s for f, s in zip(files, sizes, strict=True)})


def ingest(shard_bytes: int, max_shards: int) -> IngestConfig:
    return IngestConfig(start_date="2013-01-01", shard_bytes=shard_bytes, max_shards=max_shards)


@given(
    sizes=st.lists(st.integers(0, 10_000), min_size=1, max_size=40),
    shard_bytes=st.integers(1024, 50_000),
    max_shards=st.integers(1, 12),
)
def test_shards_are_consecutive_runs_of_every_file_never_empty_nor_too_many(sizes, shard_bytes, max_shards):
    shards = plan(ingest(shard_bytes, max_shards), delivery(sizes))
    assert [i for s in shards for i in s] == list(range(len(sizes)))  # every file once, in delivery order
    assert all(shards)
    assert len(shards) <= max(1, min(max_shards, len(sizes), -(-sum(sizes) // shard_bytes)))


def test_a_small_day_or_a_single_file_is_one_shard():
    assert plan(ingest(1024, 8), delivery([1000, 20])) == [[0, 1]]
    assert plan(ingest(1024, 8), delivery([10**9])) == [[0]]
    assert plan(ingest(1024, 1), delivery([10**6] * 5)) == [[0, 1, 2, 3, 4]]


def test_shards_hold_about_equal_bytes():
    shards = plan(ingest(1024, 4), delivery([100] * 40))
    assert [len(s) for s in shards] == [10, 10, 10, 10]
    sizes = [5000, 10, 10, 10, 5000, 10, 10, 5000]
    shards = plan(ingest(1024, 3), delivery(sizes))
    assert [sum(sizes[i] for i in s) for s in shards] == [5020, 5020, 5010]
