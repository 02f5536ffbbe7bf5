"""The scoring plan: deterministic chunks that cover every row exactly once."""

from __future__ import annotations

import pytest

from pipelines.core.errors import ConfigError
from pipelines.scoring.plan import plan_chunks


@pytest.mark.parametrize(("rows", "chunk"), [(0, 10), (1, 10), (10, 10), (11, 10), (923, 100), (1_000_000, 99_999)])
def test_chunks_cover_every_row_once_in_order(rows, chunk):
    plan = plan_chunks(rows, chunk)
    assert plan == plan_chunks(rows, chunk)  # deterministic
    covered = [r for c in plan for r in range(c["start"], c["start"] + c["rows"])]
    assert covered == list(range(rows))
    assert all(0 < c["rows"] <= chunk for c in plan) or plan == [{"index": 0, "start": 0, "rows": 0}]
    assert [c["index"] for c in plan] == list(range(len(plan)))


@pytest.mark.parametrize(
    ("groups", "chunk"),
    [
        ([50] * 5, 100),
        ([50] * 5, 40),
        ([50] * 6, 75),
        ([50] * 4, 99),
        ([256, 44], 100),
        ([7, 7, 7, 7, 2], 8),
        ([3, 90, 0, 3, 3], 10),
        ([100], 100),
    ],
)
def test_chunks_of_row_groups_never_read_another_chunks_group(groups, chunk):
    """A chunk is whole groups (at most 1.5x ``chunk`` rows, the number of groups nearest ``chunk``) or a piece
    of one group larger than ``chunk``; no chunk is empty."""
    rows = sum(groups)
    plan = plan_chunks(rows, chunk, groups)
    covered = [r for c in plan for r in range(c["start"], c["start"] + c["rows"])]
    assert covered == list(range(rows)) and [c["index"] for c in plan] == list(range(len(plan)))
    spans, start = [], 0
    for g in groups:
        spans.append((start, start + g))
        start += g
    group_of = lambda r: next(i for i, (lo, hi) in enumerate(spans) if lo <= r < hi)  # noqa: E731
    readers: dict[int, set[int]] = {}
    for c in plan:
        assert 0 < c["rows"] <= 1.5 * chunk
        touched = {group_of(r) for r in range(c["start"], c["start"] + c["rows"])}
        if len(touched) > 1:  # several groups: each one whole
            assert all(spans[g][0] >= c["start"] and spans[g][1] <= c["start"] + c["rows"] for g in touched)
        for g in touched:
            readers.setdefault(g, set()).add(c["index"])
    shared = [g for g, chunks in readers.items() if len(chunks) > 1]
    assert all(groups[g] > chunk for g in shared)  # only a group larger than a chunk is read by several
    if groups == [50] * 6:  # 75 over groups of 50: chunks of 100 (nearer 75 than 50 is), not 50
        assert [c["rows"] for c in plan] == [100, 100, 100]


def test_a_chunk_size_below_one_is_a_named_error():
    with pytest.raises(ConfigError):
        plan_chunks(10, 0)


@pytest.mark.parametrize("chunk", [1, 3, 7, 8, 11, 30, 100])
def test_chunks_read_back_the_partition_in_order_across_row_groups(tmp_path, chunk):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.scoring.chunks import ChunkReader

    table = pa.table({"k": list(range(30)), "s": [f"r{i}" for i in range(30)]})
    path = tmp_path / "part.parquet"
    pq.write_table(table, path, row_group_size=7)  # groups of 7, 7, 7, 7, 2
    source = ChunkReader(str(path))
    assert source.num_rows == 30
    parts = [source.read(c["start"], c["rows"]) for c in plan_chunks(30, chunk)]
    assert all(p.num_rows == c["rows"] for p, c in zip(parts, plan_chunks(30, chunk), strict=True))
    assert pa.concat_tables(parts).equals(table)
    assert source.read(5, 9).equals(table.slice(5, 9))  # out of order too


def test_a_partition_is_ready_to_score_only_with_its_published_report(tmp_path):
    from pipelines.core import catalog
    from pipelines.core.config import load_project
    from pipelines.core.storage import LocalStorage
    from pipelines.scoring import validated_ready

    project, storage, ds = load_project("flights_delay"), LocalStorage(tmp_path), "2013-01-05"
    report = catalog.validation_report(project.dataset.name, ds)
    validated = catalog.validated_file(project.dataset.name, ds)
    assert validated_ready(project, ds, storage) == "waiting"
    storage.write_bytes(validated, b"PAR1")
    assert validated_ready(project, ds, storage) == "waiting"  # validation writes the report after the file
    storage.write_json(report, {"summary": {"status": "published", "contract_version": "1.0.0"}})
    assert validated_ready(project, ds, storage) == "ready"
    storage.write_json(report, {"summary": {"status": "halted"}})
    storage.delete(validated)
    assert validated_ready(project, ds, storage) == "halted"
