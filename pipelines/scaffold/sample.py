"""A sample delivery on local disk, read the way the validation step reads a delivery.

A sample is one landed file, one delivery folder (a day: its data files and
its ready marker), or a dataset's landing folder holding one delivery folder
per day (named as the catalog names partition folders). Data files are read
as validation reads them (:mod:`pipelines.ingest.landing`): CSV columns as
text with the same null tokens, Parquet columns as stored; names starting with
``.`` or ``_`` are metadata (the ready marker), never data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pipelines.core import catalog
from pipelines.core.errors import ConfigError, InvalidPartitionKey
from pipelines.core.partitions import ds_str

if TYPE_CHECKING:
    import pyarrow as pa

#: The latest days of a landing folder read for inference (its first day still sets the feed's start).
MAX_DAYS = 31
#: Data file suffixes validation reads (``pipelines.ingest.landing.SUPPORTED_SUFFIXES``).
SUFFIXES = (".csv", ".csv.gz", ".parquet")


@dataclass
class SampleDay:
    """One delivery of the sample: its partition day when its folder names it, and its files as read."""

    ds: str | None
    folder: Path
    tables: list[tuple[str, pa.Table]] = field(default_factory=list)
    markers: set[str] = field(default_factory=set)

    @property
    def rows(self) -> int:
        return sum(t.num_rows for _, t in self.tables)


@dataclass
class Sample:
    """The sample's deliveries, oldest first."""

    path: Path
    days: list[SampleDay]
    #: Delivery folders found (more than ``days`` when only the latest :data:`MAX_DAYS` were read).
    days_found: int
    first_day: str | None
    landing_format: str
    ready_marker: str | None

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.days)

    @property
    def files(self) -> int:
        return sum(len(d.tables) for d in self.days)

    @property
    def known_days(self) -> list[str]:
        return [d.ds for d in self.days if d.ds]


def partition_day(folder: Path) -> str | None:
    """The day a folder is the partition folder of (as the catalog names them), else None."""
    try:
        ds = ds_str(folder.name[-10:])
    except InvalidPartitionKey:
        return None
    return ds if PurePosixPath(catalog.landing_dir("sample", ds)).name == folder.name else None


def _is_data(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def _hidden(rel: Path) -> bool:
    return any(part.startswith((".", "_")) for part in rel.parts)


def _delivery(folder: Path, ds: str | None) -> SampleDay:
    """A delivery folder's data files (any depth, hidden names skipped) and its top-level markers."""
    day = SampleDay(ds, folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if _hidden(rel):
            if len(rel.parts) == 1 and rel.name.startswith("_"):
                day.markers.add(rel.name)
            continue
        if not _is_data(path):
            raise ConfigError(f"sample {path}: unsupported file type (validation reads {', '.join(SUFFIXES)})")
        day.tables.append((rel.as_posix(), read_file(path)))
    return day


def _deliveries(path: Path) -> list[tuple[Path, str | None]]:
    """The delivery folders (or the one file) a sample path stands for, with their days."""
    if not path.exists():
        raise ConfigError(f"sample {path}: no such file or folder")
    if path.is_file():
        if not _is_data(path):
            raise ConfigError(f"sample {path}: unsupported file type (validation reads {', '.join(SUFFIXES)})")
        return [(path, partition_day(path.parent))]
    days = sorted((p, partition_day(p)) for p in path.iterdir() if p.is_dir() and partition_day(p))
    if not days:
        return [(path, partition_day(path))]
    loose = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if loose:
        raise ConfigError(
            f"sample {path}: holds both day folders and data files ({', '.join(loose[:3])}); "
            "give one delivery folder, or a landing folder of day folders"
        )
    return sorted(days, key=lambda d: d[1] or "")


def read_sample(path: str | Path) -> Sample:
    """Read a sample delivery (see the module doc).

    Raises:
        ConfigError: no such path, an unsupported or unreadable file, or no data row at all.
    """
    path = Path(path).expanduser().resolve()
    found = _deliveries(path)
    first = found[0][1]
    days = []
    for folder, ds in found[-MAX_DAYS:]:
        if folder.is_file():
            markers = {p.name for p in folder.parent.iterdir() if p.is_file() and p.name.startswith("_")}
            days.append(SampleDay(ds, folder.parent, [(folder.name, read_file(folder))], markers))
        else:
            days.append(_delivery(folder, ds))
    if not any(d.tables for d in days):
        raise ConfigError(f"sample {path}: no data file ({', '.join(SUFFIXES)}) found")
    if not any(d.rows for d in days):
        raise ConfigError(f"sample {path}: no data row in {sum(len(d.tables) for d in days)} file(s)")
    names = [n for d in days for n, _ in d.tables]
    landing_format = "parquet" if all(n.lower().endswith(".parquet") for n in names) else "csv"
    return Sample(path, days, len(found), first, landing_format, _ready_marker(days))


def _ready_marker(days: list[SampleDay]) -> str | None:
    """The marker file every delivery folder of the sample holds (``_SUCCESS``), if one does."""
    folders = [d for d in days if d.tables]
    common = Counter(m for d in folders for m in d.markers)
    everywhere = sorted(m for m, n in common.items() if n == len(folders))
    if "_SUCCESS" in everywhere:
        return "_SUCCESS"
    return everywhere[0] if everywhere else None


def read_file(path: Path) -> pa.Table:
    """One data file as validation reads it: CSV (or .csv.gz) as text columns, Parquet as stored.

    Raises:
        ConfigError: the file cannot be parsed (a malformed record, not UTF-8, not Parquet).
    """
    import csv
    import gzip

    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from pipelines.ingest.landing import NULL_TOKENS

    try:
        if path.name.lower().endswith(".parquet"):
            return pq.read_table(path)
        data = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            data = gzip.decompress(data)
        if not data.strip():
            return pa.table({})
        names = next(csv.reader([data.decode("utf-8-sig").splitlines()[0]]), [])
        if not names or len(set(names)) != len(names) or not all(names):
            raise ConfigError(f"sample {path}: empty or duplicated column names in the header")
        return pacsv.read_csv(
            pa.BufferReader(data),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                null_values=NULL_TOKENS,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (OSError, EOFError, ValueError, csv.Error, pa.ArrowException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"sample {path}: cannot read: {reason[:200]}") from None
