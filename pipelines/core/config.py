"""Model project configuration: one YAML per project in ``configs/``.

A project is configuration, not code: the dataset and its contract, features,
target and task type, model family, training window, gate, drift policy and
scoring options. DAGs are generated for every project found. The YAML is
validated by the pydantic models below when a step runs; an invalid file fails
with one line naming the file, the key and the problem (or, for a file that is
not UTF-8, not YAML, empty or not a mapping, that problem and where).
``load_projects`` loads them all and reports the bad ones instead of raising,
so one bad file never hides the other projects (the DAG files rely on it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from pipelines.core.catalog import NAME_RE
from pipelines.core.errors import ConfigError
from pipelines.core.settings import Settings, get_settings

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


def _valid_cron(value: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(value):
        raise ValueError(f"not a cron expression or preset: {value!r}")
    return value


#: A cron expression or preset (``@daily``), checked when the config loads.
CronExpression = Annotated[str, AfterValidator(_valid_cron)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestConfig(_Strict):
    """Schedule and sensor policy of the dataset's ingest DAG."""

    schedule: CronExpression = Field("@daily", description="runs cover the interval before them")
    ready_marker: str | None = Field(
        "_SUCCESS",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
        description="file upstream writes last; validation waits for it (null: any landed file will do)",
    )
    start_date: dt.date
    end_date: dt.date | None = None
    catchup: bool = False
    sensor_poke_seconds: int = Field(300, ge=5, le=86_400)
    sensor_timeout_minutes: int = Field(360, ge=1, le=44_640, description="at most a month")
    retries: int = Field(2, ge=2, le=20, description="policy: every task retries at least twice")
    batch_rows: int = Field(
        200_000,
        ge=1_000,
        le=5_000_000,
        description="rows validated at a time: a validation task's memory follows this, not the day's size",
    )
    shard_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="a day of more landed bytes than this is read by parallel shard tasks, about this much each "
        "(whole files each; the day is still decided and published by one task)",
    )
    max_shards: int = Field(8, ge=1, le=64, description="at most this many shard tasks per day (1: never split)")

    @model_validator(mode="after")
    def _dates_ordered(self) -> IngestConfig:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class DatasetConfig(_Strict):
    """A dataset (``configs/datasets/<name>.yaml``): a feed ingested once, read by any number of model projects.

    It owns everything about a delivery: the contract that governs it, the
    landing format and ready marker, and the ingest DAG's schedule and sensor
    policy. One ingest DAG per dataset validates and publishes each partition
    once; every model project that names the dataset follows its validated
    asset.
    """

    name: Identifier = Field(description="dataset name, used in storage paths, asset names and the ingest DAG id")
    description: str = ""
    owner: str = "data-platform"
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, description="Airflow DAG tags of the ingest DAG"
    )
    contract: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.ya?ml$", description="contract file name in data_contracts/"
    )
    landing_format: Literal["csv", "parquet"] = "csv"
    ingest: IngestConfig

    #: Where the file was loaded from (not part of the YAML).
    source: Path | None = Field(None, exclude=True)


class RetrainConfig(_Strict):
    """Schedule of the retrain DAG (it also runs on the drift asset and by hand)."""

    schedule: CronExpression = "@monthly"
    start_date: dt.date = dt.date(2013, 1, 1)
    end_date: dt.date | None = None
    retries: int = Field(2, ge=2, le=20)


class TargetConfig(_Strict):
    """What the model predicts."""

    column: str
    task: Literal["classification", "regression"]
    positive_threshold: float | None = Field(None, description="classification: label is 1 when column >= threshold")

    @model_validator(mode="after")
    def _threshold_for_classification(self) -> TargetConfig:
        if self.task == "classification" and self.positive_threshold is None:
            raise ValueError("classification needs positive_threshold")
        return self


class ExpressionFeature(_Strict):
    """A derived feature declared in the config: a scalar SQL expression over the contract's columns.

    Checked when the project's feature spec is built (``pipelines.core.expressions``): one
    expression, only columns, constants, operators, ``CASE``, ``CAST`` and allow-listed scalar
    functions; no subquery, table, file or aggregate.
    """

    expr: str = Field(min_length=1, max_length=2000, description="e.g. (sched_dep_time // 100) * 60")
    kind: Literal["numeric", "categorical"] = Field("numeric", description="numeric: float64; categorical: string")
    calendar: bool = Field(
        False, description="a calendar position (one value per daily partition): left out of drift monitoring"
    )


class FeaturesConfig(_Strict):
    """Model inputs, all known before the prediction is made."""

    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    derived: list[str] = Field(default_factory=list, description="names of registered derived features")
    expressions: dict[Identifier, ExpressionFeature] = Field(
        default_factory=dict, description="derived features declared here: name -> expression"
    )

    @model_validator(mode="after")
    def _not_empty(self) -> FeaturesConfig:
        names = self.numeric + self.categorical + self.derived + list(self.expressions)
        if not names:
            raise ValueError("at least one feature is needed")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features listed twice: {dupes}")
        return self


class ModelFamilyConfig(_Strict):
    """Estimator family and its hyper-parameters."""

    family: Literal["xgboost", "sklearn"] = "xgboost"
    estimator: str | None = Field(None, description="sklearn: dotted path of the estimator class")
    params: dict[str, Any] = Field(default_factory=dict)


class MetricsConfig(_Strict):
    """How models are compared: the primary metric decides, secondaries inform."""

    primary: str
    secondary: list[str] = Field(default_factory=list)
    classification_threshold: float = Field(
        0.5, gt=0, lt=1, description="classification: label 1 when the probability is at least this"
    )


class MinChange(_Strict):
    """Minimum improvement of a metric over the champion (in its better direction)."""

    absolute: float | None = None
    relative: float | None = None


class BootstrapConfig(_Strict):
    """Paired bootstrap on the primary metric's difference (challenger - champion)."""

    samples: int = Field(1000, ge=100, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    tolerance: float = Field(0.0, ge=0, description="lower bound must be above -tolerance")
    seed: int = 20130101
    unit: Literal["day", "row"] = Field(
        "day",
        description="what is resampled: whole partition days (rows of one day share weather and schedules, "
        "so they are not independent) or single rows",
    )
    min_days: int = Field(5, ge=2, le=366, description="fewest holdout days a day-level bootstrap accepts")


class SlicesConfig(_Strict):
    """Per-slice non-regression of the primary metric."""

    columns: list[str] = Field(default_factory=list)
    min_size: int = Field(200, ge=1)
    tolerance: float = Field(0.02, ge=0, description="largest allowed loss on any slice")
    unchecked: Literal["reject", "record"] = Field(
        "reject",
        description="a slice column with no value the metric could be checked on (all under min_size or "
        "one class): reject the challenger, or record the column as not checked and go on",
    )


class LiveGateConfig(_Strict):
    """The live criterion: a shadow version against the champion on the same labelled days' rows.

    Over the rolling window of ``window_days`` partition days ending at the day judged, on the days both
    scored: at least ``min_days`` of them, a paired bootstrap over days of the primary metric's gain
    whose lower bound is above ``min_gain``, and no slice losing more than ``gate.slices.tolerance``.
    """

    min_days: int = Field(7, ge=2, le=366, description="fewest labelled days both scored before any decision")
    window_days: int = Field(14, ge=2, le=366, description="the rolling window of partition days judged")
    min_gain: float = Field(
        0.0, description="the paired interval's lower bound must be above this (0: better with confidence)"
    )
    samples: int = Field(1000, ge=100, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 20130101

    @model_validator(mode="after")
    def _window_holds_the_days(self) -> LiveGateConfig:
        if self.window_days < self.min_days:
            raise ValueError(f"window_days ({self.window_days}) is shorter than min_days ({self.min_days})")
        return self


class GateConfig(_Strict):
    """Promotion criteria; all must pass.

    ``promotion`` says which evidence promotes: ``holdout`` (the holdout gate promotes a retrained
    challenger at once), ``live`` (a challenger that passes the holdout's sanity checks, its size, floors
    and inputs, starts as a shadow and is promoted by the live criterion alone) or ``both`` (a challenger
    that passes the holdout gate starts as a shadow and is promoted when the live criterion passes and its
    holdout gate, run again against the champion of the day, still passes). A shadow version is promoted
    by the live criterion in every mode, with the holdout gate too unless the mode is ``live``.
    """

    promotion: Literal["holdout", "live", "both"] = "holdout"
    live: LiveGateConfig = Field(default_factory=LiveGateConfig)

    floors: dict[str, float] = Field(
        default_factory=dict, description="metric -> worst acceptable value (a floor or a ceiling by direction)"
    )
    min_change: dict[str, MinChange] = Field(default_factory=dict)
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    slices: SlicesConfig = Field(default_factory=SlicesConfig)
    min_holdout_rows: int = Field(200, ge=1, description="fewest labelled rows the common holdout may have")
    min_class_rows: int = Field(20, ge=1, description="classification: fewest rows of each class in the common holdout")


class SampleConfig(_Strict):
    """How a window too large for memory is read: a seeded sample of its rows, the same every time.

    Each part of the window (train, holdout) holding more than ``max_rows``
    rows is read row group by row group, keeping each row with probability
    ``max_rows / rows`` (a Bernoulli draw seeded by ``seed``, the day and the
    group), so memory holds about ``max_rows`` rows and one row group,
    whatever the window. The sample is recorded with the training set and on
    the MLflow run; a sampled window has its own data fingerprint.
    """

    max_rows: int = Field(2_000_000, ge=1_000, description="rows of a part of the window held in memory at most")
    seed: int = Field(20130101, ge=0)


class TrainingConfig(_Strict):
    """Training window: the last holdout_days of it are never trained on."""

    window_days: int = Field(60, gt=1, le=3660)
    holdout_days: int = Field(7, gt=0, le=366)
    sample: SampleConfig = Field(default_factory=SampleConfig)

    @model_validator(mode="after")
    def _holdout_inside_window(self) -> TrainingConfig:
        if self.holdout_days >= self.window_days:
            raise ValueError("holdout_days must be smaller than window_days")
        return self


class DecayLimit(_Strict):
    """Largest allowed loss of a metric against the champion's holdout baseline (in its worse direction)."""

    absolute: float | None = Field(None, gt=0)
    relative: float | None = Field(None, gt=0, description="fraction of the baseline, e.g. 0.2")

    @model_validator(mode="after")
    def _one_bound(self) -> DecayLimit:
        if self.absolute is None and self.relative is None:
            raise ValueError("give absolute and/or relative")
        return self


class DriftConfig(_Strict):
    """Drift and performance monitoring, and when it asks for a retraining (``pipelines/monitoring/``).

    Each check pools the ``window_days`` validated partitions ending at the
    checked day (a week evens out weekday schedules and one day's weather). It
    *signals* when the share of drifted monitored features reaches
    ``drift_share`` or a live metric decayed beyond ``performance_decay``. The
    policy *fires* (emits the drift asset, which triggers the retrain DAG) when
    the partition and the ``consecutive - 1`` validated partitions before it
    all signal, the partition has at least ``min_rows`` rows, and the last
    retraining (or firing) is at least ``cooldown_days`` partition days back.
    """

    window_days: int = Field(
        7, ge=1, le=90, description="validated partitions pooled into each check, ending at the checked day"
    )
    columns: list[str] | None = Field(
        None, description="monitored features (default: every model feature but calendar-like ones)"
    )
    exclude: list[str] = Field(default_factory=list, description="features never monitored")
    method: str | None = Field(
        None, description="Evidently stat test for every column (default: chosen by type and size)"
    )
    threshold: float | None = Field(None, gt=0, description="the stat test's threshold (default: the test's own)")
    drift_share: float = Field(0.5, gt=0, le=1, description="share of drifted monitored features that signals")
    performance_decay: dict[str, DecayLimit] = Field(default_factory=dict)
    consecutive: int = Field(2, ge=1, le=30, description="partitions in a row that must signal (hysteresis)")
    cooldown_days: int = Field(
        14, ge=0, le=3660, description="partition days after a retraining or firing with no firing"
    )
    min_rows: int = Field(200, ge=1, description="a window with fewer rows never signals")
    reference_sample_rows: int = Field(
        20_000, ge=1000, le=1_000_000, description="rows of the training set kept as Evidently's reference"
    )


class ExplanationsConfig(_Strict):
    """Reasons beside each score (:mod:`pipelines.core.reasons`): each row's ``top_k`` features by the
    size of their contribution, as ``reason_<i>`` (the feature) and ``reason_<i>_contribution`` (signed)."""

    top_k: int = Field(3, ge=1, le=10, description="reasons per row (fewer when the model has fewer features)")
    method: Literal["tree_shap", "saabas"] = Field(
        "tree_shap",
        description="XGBoost models: exact tree SHAP (pred_contribs), or Saabas' approximation (approx_contribs, "
        "several times cheaper); any other model falls back to feature ablation whatever this says",
    )


class ScoringConfig(_Strict):
    """Batch scoring (``pipelines/scoring/``)."""

    chunk_rows: int = Field(
        100_000, ge=100, le=5_000_000, description="rows per checkpointed chunk (and per output row group)"
    )
    model_choice: Literal["current", "as_of_partition"] = Field(
        "current", description="default version: today's champion, or the one that was champion on the partition's date"
    )
    schedule: CronExpression = Field("@daily", description="data intervals: the run after a day ends scores that day")
    start_date: dt.date | None = Field(None, description="first partition scored on schedule (default: ingest's)")
    end_date: dt.date | None = Field(None, description="last partition scored on schedule (default: ingest's)")
    catchup: bool = False
    sensor_poke_seconds: int = Field(300, ge=5, le=86_400, description="how often to look for the validated partition")
    sensor_timeout_minutes: int = Field(
        360, ge=1, le=44_640, description="then the run is skipped: nothing to score (at most a month)"
    )
    parallel_chunks: int = Field(8, ge=1, le=256, description="mapped chunk tasks running at once per DAG run")
    retries: int = Field(2, ge=2, le=20, description="policy: every task retries at least twice")
    explanations: ExplanationsConfig | None = Field(
        None, description="reasons beside each score (off by default: exact tree SHAP costs more than the trees)"
    )


class ShadowConfig(_Strict):
    """Shadow versions: scored beside the champion on every partition, into ``shadow/<model>/v=<N>/``
    (never BI's table), measured on the same labelled rows and promoted or retired by the live gate.

    A version is a shadow when the retrain gate started it (``drift_challenger: shadow``, or
    ``gate.promotion`` live or both; under ``live``, a challenger the holdout rejected on the comparisons
    alone is one), or when a scientist names it (``versions``, the ``shadow`` alias, or
    ``pipelines shadow add``), and until it is promoted or retired.
    """

    max_versions: int = Field(2, ge=0, le=8, description="shadow versions scored at once (the newest first)")
    versions: list[Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,9}$")]] = Field(
        default_factory=list, description="registered version numbers to shadow (until retired or promoted)"
    )
    drift_challenger: Literal["promote", "shadow"] = Field(
        "promote", description="a drift-triggered challenger that passes the gate: promoted, or shadowed first"
    )
    max_age_days: int = Field(
        30, ge=1, le=3660, description="partition days a shadow is scored without promotion before it retires"
    )


class CardConfig(_Strict):
    """What a version's model card (:mod:`pipelines.training.card`) says that no run can: its purpose and
    the limits its owner knows of."""

    intended_use: str = Field("", description="what the scores are for, and for whom (default: the description)")
    limitations: list[Annotated[str, StringConstraints(min_length=1, max_length=1000)]] = Field(
        default_factory=list, description="known limitations, listed on every card beside those measured"
    )


#: An Airflow connection id (letters, digits, ``_ . -``): where an alert target's secrets live.
ConnectionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]
#: One e-mail address, checked for shape only (the SMTP server is the judge of the rest).
EmailAddress = Annotated[str, StringConstraints(pattern=r"^[^@\s,;<>]{1,64}@[^@\s,;<>]{1,253}$")]

#: Every alert a project can be sent (see :mod:`pipelines.core.alerts`).
ALERT_EVENTS = ("task_failed", "contract_halt", "drift_fired", "gate_decision", "rollback", "deadline_missed")


class WebhookTarget(_Strict):
    """A Slack-compatible incoming webhook: the URL is the password of an Airflow connection of type
    ``slackwebhook``, never in the config."""

    conn_id: ConnectionId = "alerts_webhook"


class EmailTarget(_Strict):
    """E-mail through the SMTP server of an Airflow connection of type ``smtp`` (host, port, login,
    password, TLS and ``from_email`` in its extras); the recipients are the config's."""

    conn_id: ConnectionId = "alerts_smtp"
    to: list[EmailAddress] = Field(min_length=1, max_length=50)


class DeadlinesConfig(_Strict):
    """Late-day alerts: a scheduled day not validated (or not scored) this many minutes after its data
    interval ends. Only scheduled runs are judged: a backfill of past days is late by construction."""

    validated_within_minutes: int | None = Field(None, ge=1, le=44_640, description="ingest: at most a month")
    scored_within_minutes: int | None = Field(None, ge=1, le=44_640, description="batch scoring: at most a month")


class AlertsConfig(_Strict):
    """Where the project's alerts go and which ones it gets. Secrets live in Airflow connections; a
    target whose connection is missing or failing is logged and never fails a pipeline task."""

    webhook: WebhookTarget | None = None
    email: EmailTarget | None = None
    events: list[Literal[ALERT_EVENTS]] = Field(
        default_factory=lambda: list(ALERT_EVENTS), description="the events sent (default: all)"
    )
    deadlines: DeadlinesConfig = Field(default_factory=DeadlinesConfig)

    def wants(self, event: str) -> bool:
        """Whether ``event`` is sent, to at least one target."""
        return event in self.events and (self.webhook is not None or self.email is not None)


class ProjectConfig(_Strict):
    """A model project (``configs/<name>.yaml``).

    ``dataset`` is a dataset's name in the YAML; :func:`load_project` replaces
    it by the loaded :class:`DatasetConfig`, so ``project.dataset.name`` and
    ``project.dataset.ingest`` are at hand wherever a project is.
    """

    name: Identifier
    description: str = ""
    owner: str = "data-platform"
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, description="Airflow DAG tags (at most 100 characters each)"
    )
    dataset: DatasetConfig = Field(description="the dataset the project reads: its name in the YAML")
    target: TargetConfig
    features: FeaturesConfig
    model: ModelFamilyConfig = Field(default_factory=ModelFamilyConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    metrics: MetricsConfig | None = None
    gate: GateConfig = Field(default_factory=GateConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    card: CardConfig = Field(default_factory=CardConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    @model_validator(mode="after")
    def _metrics_known(self) -> ProjectConfig:
        from pipelines.core.metrics import METRICS, default_metrics

        task = self.target.task
        metrics = self.metrics or default_metrics(task)
        names = [
            metrics.primary,
            *metrics.secondary,
            *self.gate.floors,
            *self.gate.min_change,
            *self.drift.performance_decay,
        ]
        for name in names:
            if name not in METRICS:
                raise ValueError(f"unknown metric {name!r} (known: {sorted(METRICS)})")
            if task not in METRICS[name].tasks:
                raise ValueError(f"metric {name!r} does not apply to {task}")
        if self.metrics is None:
            object.__setattr__(self, "metrics", metrics)
        if self.shadow.max_versions < 1 and (
            self.gate.promotion != "holdout" or self.shadow.drift_challenger == "shadow"
        ):
            raise ValueError(
                "shadow.max_versions is 0 but gate.promotion or shadow.drift_challenger starts challengers as "
                "shadows: allow at least one shadow version, or promote on the holdout"
            )
        return self

    #: Where the file was loaded from (not part of the YAML).
    source: Path | None = Field(None, exclude=True)


def format_validation_error(path: Path | str, exc: ValidationError) -> str:
    """One line naming the file, each bad key and its problem."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict | list):
            msg = f"{msg} (got {err['input']!r})"
        parts.append(f"{key}: {msg}")
    return f"{path}: " + "; ".join(parts)


def _construct_object(self: Any, node: yaml.Node, deep: bool = False) -> Any:
    try:
        return yaml.constructor.BaseConstructor.construct_object(self, node, deep=deep)
    except ValueError as exc:  # PyYAML lets the date or number constructor's ValueError out, unmarked
        problem = f"cannot read {node.value!r}: {exc}"
        raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but a scalar it cannot build (``2013-02-30``, ``!!int x``) is a marked YAML error."""

    construct_object = _construct_object


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """One line: what PyYAML objects to, and where (1-based line and column)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        context = f"{exc.context}: " if exc.context else ""
        return f"{context}{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        return f"{str(exc).splitlines()[0]} (line {line}, column {column})"
    return str(exc).splitlines()[0]


def read_yaml(path: Path) -> Any:
    """The one YAML document in a file (``None`` when it holds none: empty, or comments only).

    Raises:
        ConfigError: one line naming the file and the problem: unreadable, not
            UTF-8 (with the first bad byte's offset), or not valid YAML (with
            the line and column).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}); save it as UTF-8"
        ) from None
    # LibYAML accepts tabs where the pure-Python parser refuses them: a text with a tab goes to the latter,
    # so a config loads (or not) as it always has, wherever LibYAML is built or not.
    if "\t" not in text:
        try:
            return yaml.load(text, Loader=_FastLoader)  # noqa: S506 - a SafeLoader subclass
        except (yaml.YAMLError, ValueError):
            pass  # read again by the pure-Python parser, whose messages name the problem and where
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, ValueError) as exc:
        problem = _yaml_problem(exc, text) if isinstance(exc, yaml.YAMLError) else str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML: {problem}") from None


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """LibYAML's safe parser (ten times faster: every task reads its configs), with :class:`_Loader`'s scalars."""

    construct_object = _construct_object


def _yaml_files(settings: Settings) -> list[Path]:
    """The visible ``*.yaml`` and ``*.yml`` entries of the config folder (profiles live in a subfolder)."""
    if not settings.config_dir.is_dir():
        return []
    return sorted(
        p for p in settings.config_dir.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
    )


def list_projects(settings: Settings | None = None) -> list[str]:
    """Names of all model projects in the config folder (sorted).

    A project is a ``<name>.yaml`` file whose stem is a valid project name;
    other YAML files in the folder are not projects, and ``load_projects``
    reports them. Hidden files (an editor's) are ignored.
    """
    settings = settings or get_settings()
    return sorted(p.stem for p in _yaml_files(settings) if p.suffix == ".yaml" and NAME_RE.fullmatch(p.stem))


def datasets_dir(settings: Settings | None = None) -> Path:
    """``<config dir>/datasets``: one ``<dataset>.yaml`` per dataset."""
    return (settings or get_settings()).config_dir / "datasets"


def _dataset_files(settings: Settings) -> list[Path]:
    folder = datasets_dir(settings)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))


def list_datasets(settings: Settings | None = None) -> list[str]:
    """Names of all datasets in ``configs/datasets/`` (sorted)."""
    settings = settings or get_settings()
    return sorted(p.stem for p in _dataset_files(settings) if p.suffix == ".yaml" and NAME_RE.fullmatch(p.stem))


def _mapping(path: Path, what: str) -> dict[str, Any]:
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: empty: expected a mapping of {what} settings")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: <root>: expected a mapping, got {type(raw).__name__} {_short(raw)}")
    return raw


def load_dataset(name: str, settings: Settings | None = None) -> DatasetConfig:
    """Load and validate a dataset config (``configs/datasets/<name>.yaml``).

    Raises:
        ConfigError: unknown dataset, unreadable file or invalid content; one
            line naming the file and the problem.
    """
    settings = settings or get_settings()
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"invalid dataset name {name!r}: expected lowercase letters, digits and _")
    path = datasets_dir(settings) / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(list_datasets(settings)) or "none"
        raise ConfigError(f"{path}: no such dataset (known: {known})")
    raw = _mapping(path, "dataset")
    try:
        dataset = DatasetConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
    if dataset.name != name:
        raise ConfigError(f"{path}: name: must equal the file name {name!r} (got {dataset.name!r})")
    return dataset.model_copy(update={"source": path})


def dataset_of(source: DatasetConfig | ProjectConfig) -> DatasetConfig:
    """The dataset itself, or a model project's dataset (functions of a dataset accept either)."""
    if isinstance(source, DatasetConfig):
        return source
    if isinstance(source, ProjectConfig):
        return source.dataset
    raise TypeError(f"expected a DatasetConfig or a ProjectConfig, got {type(source).__name__}")


def load_project(name: str, settings: Settings | None = None) -> ProjectConfig:
    """Load and validate a model project config, with the dataset it names.

    Args:
        name: project name, the config's file stem.
        settings: environment settings (default: from the environment).

    Raises:
        ConfigError: unknown project, unreadable file (not UTF-8, not valid
            YAML, empty, not a mapping), invalid content, or a dataset that does
            not load; one line naming the file and the problem.
    """
    settings = settings or get_settings()
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"invalid model name {name!r}: expected lowercase letters, digits and _")
    path = settings.config_dir / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(list_projects(settings)) or "none"
        raise ConfigError(f"{path}: no such model project (known: {known})")
    raw = _mapping(path, "project")
    dataset = raw.get("dataset")
    if isinstance(dataset, dict) or "ingest" in raw:
        raise ConfigError(
            f"{path}: dataset: a project names its dataset (`dataset: <name>`); the contract, landing format "
            f"and ingest settings are declared once, in {datasets_dir(settings)}/<name>.yaml"
        )
    if dataset is None:
        raise ConfigError(f"{path}: dataset: Field required (the name of a dataset in {datasets_dir(settings)})")
    if not isinstance(dataset, str) or not NAME_RE.fullmatch(dataset):
        raise ConfigError(f"{path}: dataset: not a dataset name (got {_short(dataset)})")
    try:
        resolved = load_dataset(dataset, settings)
    except ConfigError as exc:
        raise ConfigError(f"{path}: dataset {dataset!r} does not load: {exc}") from None
    try:
        project = ProjectConfig.model_validate({**raw, "dataset": resolved})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
    if project.name != name:
        raise ConfigError(f"{path}: name: must equal the file name {name!r} (got {project.name!r})")
    return project.model_copy(update={"source": path})


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class ProjectScan:
    """Every model project whose config loads, and a one-line problem for each config file that does not."""

    projects: list[ProjectConfig]
    problems: list[str]


def load_projects(settings: Settings | None = None) -> ProjectScan:
    """Load every YAML file of the config folder; a bad one never stops the others.

    The problems name the file: a ``ConfigError`` of ``load_project``, a
    ``*.yml`` file (not read: projects are ``*.yaml``) or a file whose name is
    not a valid project name (it would never be read).
    """
    settings = settings or get_settings()
    projects, problems = [], []
    for path in _yaml_files(settings):
        if path.suffix != ".yaml":
            problems.append(f"{path}: not read: a model config is named <project>.yaml")
        elif not NAME_RE.fullmatch(path.stem):
            problems.append(
                f"{path}: not read: {path.stem!r} is not a project name "
                "(lowercase letters, digits and _, a letter first, at most 63 characters)"
            )
        else:
            try:
                projects.append(load_project(path.stem, settings))
            except ConfigError as exc:
                problems.append(str(exc))
            except RecursionError:  # YAML nested thousands deep
                problems.append(f"{path}: not read: nested too deeply")
    return ProjectScan(projects, problems)


@dataclass(frozen=True)
class DatasetScan:
    """Every dataset whose config loads, and a one-line problem for each dataset file that does not."""

    datasets: list[DatasetConfig]
    problems: list[str]


def load_datasets(settings: Settings | None = None) -> DatasetScan:
    """Load every YAML file of ``configs/datasets/``; a bad one never stops the others."""
    settings = settings or get_settings()
    datasets, problems = [], []
    for path in _dataset_files(settings):
        if path.suffix != ".yaml" or not NAME_RE.fullmatch(path.stem):
            problems.append(
                f"{path}: not read: a dataset config is named <dataset>.yaml "
                "(lowercase letters, digits and _, a letter first, at most 63 characters)"
            )
            continue
        try:
            datasets.append(load_dataset(path.stem, settings))
        except ConfigError as exc:
            problems.append(str(exc))
        except RecursionError:
            problems.append(f"{path}: not read: nested too deeply")
    return DatasetScan(datasets, problems)
