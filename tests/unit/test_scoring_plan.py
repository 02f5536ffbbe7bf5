"""The scoring plan: deterministic chunks that cover every row exactly once."""

from __future__ import annotations

import pytest

from pipelines.errors import ConfigError
from pipelines.scoring import plan_chunks


@pytest.mark.parametrize(("rows", "chunk"), [(0, 10), (1, 10), (10, 10), (11, 10), (923, 100), (1_000_000, 99_999)])
def test_chunks_cover_every_row_once_in_order(rows, chunk):
    plan = plan_chunks(rows, chunk)
    assert plan == plan_chunks(rows, chunk)  # deterministic
    covered = [r for c in plan for r in range(c["start"], c["start"] + c["rows"])]
    assert covered == list(range(rows))
    assert all(0 < c["rows"] <= chunk for c in plan) or plan == [{"index": 0, "start": 0, "rows": 0}]
    assert [c["index"] for c in plan] == list(range(len(plan)))


def test_a_chunk_size_below_one_is_a_named_error():
    with pytest.raises(ConfigError):
        plan_chunks(10, 0)
