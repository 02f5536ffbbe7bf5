"""Named, expected failures and their documented exit codes.

Expected failures raise a subclass of :class:`PipelinesError`; the CLI prints
its one-line message on stderr and exits with its ``exit_code``. Anything else
is unexpected, keeps its traceback and exits 1.

| code | meaning |
|---|---|
| 0 | success |
| 1 | unexpected error (bug or infrastructure), traceback in the log |
| 2 | invalid configuration, contract or arguments |
| 3 | data contract halt: nothing published for the partition |
| 4 | promotion gate rejected the challenger |
| 5 | required input missing (nothing landed, partition or model absent) |
| 6 | interrupted (SIGTERM, e.g. a spot notice): the checkpoint is consistent, a rerun resumes |
| 7 | conflict: the scoring plan was re-planned, its input changed, or its manifest was lost; rerun from the plan |
| 7 | conflict: a lock held for the whole wait, taken over, or an object written meanwhile: rerun |
"""

from __future__ import annotations


class PipelinesError(Exception):
    """Base class of expected failures."""

    exit_code = 1


class ConfigError(PipelinesError):
    """A model config, profile, contract or argument is invalid."""

    exit_code = 2


class InvalidPartitionKey(ConfigError):
    """A partition key is not a valid ``YYYY-MM-DD`` date."""


class ContractHalt(PipelinesError):
    """A halt rule fired: the partition is not published.

    Attributes:
        ds: the partition key.
        rules: ids of the rules that caused the halt.
        report: URI of the validation report explaining it.
    """

    exit_code = 3

    def __init__(self, message: str, *, ds: str, rules: list[str], report: str, summary: dict | None = None):
        super().__init__(message)
        self.ds = ds
        self.rules = rules
        self.report = report
        self.summary = summary or {}


class GateRejected(PipelinesError):
    """The promotion gate kept the champion; ``decision`` holds every criterion and its figures."""

    exit_code = 4

    def __init__(self, message: str, decision: dict | None = None):
        super().__init__(message)
        self.decision = decision


class MissingInput(PipelinesError):
    """A required input (landed files, a partition, a model) does not exist."""

    exit_code = 5


class NothingLanded(MissingInput):
    """No file has landed for the partition, or its delivery is not complete yet."""


class DeliveryChanged(NothingLanded):
    """The delivery changed while it was validated (a file added, removed or rewritten): nothing was
    written; validate again once upstream has finished (its ready marker is newer than every file)."""


class NoValidatedPartition(MissingInput):
    """A step needs a validated partition that does not exist (never validated, or halted)."""

    def __init__(self, dataset: str, ds: str):
        super().__init__(f"no validated partition {dataset} ds={ds} (run validate first)")
        self.dataset = dataset
        self.ds = ds


class NoChampion(MissingInput):
    """No model version to use: no ``champion`` yet, or none was champion on the partition's date."""


class Interrupted(PipelinesError):
    """The step stopped at a chunk boundary on SIGTERM; its checkpoint is consistent and a rerun resumes."""

    exit_code = 6


class PlanConflict(PipelinesError):
    """A scoring plan cannot go on: another run re-planned the partition, its input changed, or it was
    published and its manifest is missing or damaged. Score the partition again from the plan step."""

    exit_code = 7


class ConditionFailed(PipelinesError):
    """A conditional write found the object changed by another writer: nothing was overwritten; rerun."""

    exit_code = 7
