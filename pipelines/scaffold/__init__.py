"""A new model project from a template: ``pipelines new-project NAME --dataset D``.

For a dataset the repo knows (``configs/datasets/D.yaml``) it writes the
project config alone, its features chosen from the dataset's contract. For a
new dataset it first infers a contract from a sample delivery
(:mod:`~pipelines.scaffold.infer`) and writes it with the dataset config:
types, required-ness, the natural key, the partition-date rule and a row
count that the sample passes, and the sample's ranges and allowed values as
suggestions (severity ``warning``: reported, never quarantined) marked
``# REVIEW:``.

The target is what only the user knows: the project config is written when
``--target`` names it (a config with a placeholder target would either not
load, breaking its DAGs, or list the target among its features). Without it
a new dataset's contract and config are still written, and the answer lists
the columns that could be the target and the command that writes the project
(the dataset then exists, so only the project is written).

Every file is rendered as commented YAML (:mod:`~pipelines.scaffold.render`),
loaded by the repo's own loaders from a staging folder (``load_dataset``,
``load_contract``, ``load_project``, the feature spec, the features computed
on sample rows) and, for a new contract, checked on the sample with the
validation step's own coercion and row rules: no sample row may be
quarantined and no halt rule may fire. Only then are the files written, each
atomically (a temporary file renamed over), and an existing file is replaced
only with ``force``, never a contract file another dataset's config names.
Any problem is a :class:`~pipelines.core.errors.ConfigError` (exit 2), and
nothing is written.

The module reads samples with :mod:`pipelines.ingest` (its reader's null
tokens, its coercion and its row rules), so the inferred contract is the one
validation will apply; it is a room of its own beside the stages, like the CLI.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.core.catalog import NAME_RE
from pipelines.core.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.core.contracts import Contract
    from pipelines.core.settings import Settings
    from pipelines.scaffold.profile import ColumnInfo, Frames
    from pipelines.scaffold.sample import Sample

log = logging.getLogger(__name__)

#: Validated days of a known dataset read to size a project when no sample is given.
SIZING_DAYS = 31


@dataclass
class Plan:
    """The files to write (path -> text) and what the answer reports about them."""

    files: dict[Path, str] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    frames: Frames = field(default_factory=list)
    sample: Sample | None = None


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ConfigError(
            f"invalid {what} name {value!r}: lowercase letters, digits and _, a letter first, at most 63 characters"
        )
    return value


def new_project(
    name: str,
    dataset: str,
    *,
    sample: str | Path | None = None,
    target: str | None = None,
    task: str | None = None,
    force: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Write a model project (and, for a new dataset, its contract and dataset config); see the module doc.

    Returns:
        ``written`` (paths), ``new_dataset``, ``project_written``, the chosen
        ``target``, ``task``, ``features`` and ``excluded`` columns, the
        contract's ``primary_key`` and ``partition_date``, the ``sample`` read,
        ``review`` (lines marked REVIEW), ``candidates`` (possible targets,
        when none was given) and the ``next`` commands.

    Raises:
        ConfigError: a bad name, a new dataset without a sample, an unreadable
            or empty sample, a bad target or task, a file that exists (without
            ``force``), or generated files that do not load; nothing is written.
    """
    from pipelines.core.config import datasets_dir
    from pipelines.core.settings import get_settings

    settings = settings or get_settings()
    _name(name, "project")
    _name(dataset, "dataset")
    if (datasets_dir(settings) / f"{dataset}.yaml").exists():
        plan = _for_known_dataset(name, dataset, sample, target, task, settings)
    else:
        plan = _for_new_dataset(name, dataset, sample, target, task, settings)
    _refuse_shared_contracts(plan, dataset, settings)
    existing = [str(p) for p in plan.files if p.exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)}: already there; pass --force to replace (nothing written)")
    _verify(plan, name, dataset, settings)
    for path, text in plan.files.items():
        write_atomically(path, text)
        log.info("wrote %s", path)
    plan.result["written"] = [str(p) for p in plan.files]
    plan.result["review"] = sum(text.count("# REVIEW") for text in plan.files.values())
    plan.result["next"] = _next_steps(plan, name, dataset)
    return plan.result


def _refuse_shared_contracts(plan: Plan, dataset: str, settings: Settings) -> None:
    """Refuse to write a contract file another dataset's config names, even with ``force``: it is that
    dataset's contract, and replacing it would change what its ingest validates. A config that does not
    read as YAML counts as naming every contract file its text mentions."""
    from pipelines.core.config import datasets_dir, read_yaml

    writing = {p.name for p in plan.files if p.parent == settings.contracts_dir}
    folder = datasets_dir(settings)
    if not writing or not folder.is_dir():
        return
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
        if path.stem == dataset:
            continue
        try:
            raw = read_yaml(path)
            named = [raw.get("contract")] if isinstance(raw, dict) else []
        except ConfigError:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            named = [n for n in writing if n in text]
        shared = sorted({n for n in named if isinstance(n, str) and n in writing})
        if shared:
            raise ConfigError(
                f"{settings.contracts_dir / shared[0]}: the contract of dataset {path.stem!r} ({path}); "
                f"dataset {dataset!r} cannot replace it, even with --force (nothing written)"
            )


def _for_new_dataset(
    name: str, dataset: str, sample_path: Any, target: str | None, task: str | None, settings: Settings
) -> Plan:
    from pipelines.core.config import datasets_dir
    from pipelines.scaffold.choices import start_date
    from pipelines.scaffold.infer import draft_contract
    from pipelines.scaffold.render import render_contract, render_dataset
    from pipelines.scaffold.sample import read_sample

    if sample_path is None:
        raise ConfigError(
            f"dataset {dataset!r} is new (no {datasets_dir(settings) / (dataset + '.yaml')}): give --sample, "
            "a delivery of it (a data file, a day's folder, or its landing folder of day folders)"
        )
    sample = read_sample(sample_path)
    draft, frames = draft_contract(dataset, sample, target)
    contract_file = f"{dataset}.odcs.yaml"
    start = start_date(sample.first_day, frames)
    plan = Plan(frames=frames, sample=sample)
    plan.files[settings.contracts_dir / contract_file] = render_contract(draft, sample, name if target else None)
    plan.files[datasets_dir(settings) / f"{dataset}.yaml"] = render_dataset(draft, sample, contract_file, start)
    plan.result = {
        "project": name,
        "dataset": dataset,
        "new_dataset": True,
        "primary_key": draft.primary_key,
        "partition_date": draft.partition,
        "columns": draft.types,
        "left_out_of_contract": draft.dropped,
        "notes": draft.notes,
        "sample": _sample_summary(sample),
    }
    _add_project(plan, name, dataset, target, task, draft.columns, draft.primary_key, draft.partition, start, settings)
    return plan


def _for_known_dataset(
    name: str, dataset: str, sample_path: Any, target: str | None, task: str | None, settings: Settings
) -> Plan:
    from pipelines.core.config import load_dataset
    from pipelines.core.contracts import load_contract
    from pipelines.scaffold.profile import profile

    config = load_dataset(dataset, settings)
    contract = load_contract(settings.contracts_dir / config.contract)
    types = {c.name: c.logical_type for c in contract.columns}
    plan = Plan()
    if sample_path is not None:
        from pipelines.scaffold.infer import typed_frames
        from pipelines.scaffold.sample import read_sample

        plan.sample = read_sample(sample_path)
        plan.frames = typed_frames(plan.sample, types, {c.name: c.timezone for c in contract.columns})
    else:
        plan.frames = _validated_frames(dataset, settings)
    partition = next((dict(r.params) for r in contract.rules if r.kind == "partition_date"), None)
    if partition:
        partition.pop("logical_type", None)
    plan.result = {
        "project": name,
        "dataset": dataset,
        "new_dataset": False,
        "primary_key": contract.primary_key,
        "partition_date": partition,
        "sample": _sample_summary(plan.sample) if plan.sample else None,
        "sized_on": "sample" if plan.sample else (f"{len(plan.frames)} validated day(s)" if plan.frames else None),
    }
    if target is None:
        raise ConfigError(
            f"name the target of {name!r}: pipelines new-project {name} --dataset {dataset} --target COLUMN "
            f"(candidates: {_listed(_candidates(profile(plan.frames, types), contract.primary_key, partition))})"
        )
    infos = profile(plan.frames, types)
    start = str(config.ingest.start_date)
    _add_project(plan, name, dataset, target, task, infos, contract.primary_key, partition, start, settings)
    return plan


def _validated_frames(dataset: str, settings: Settings) -> Frames:
    """The latest validated days of a dataset, to size the project on (none: the defaults)."""
    from pipelines.core import catalog
    from pipelines.core.storage import get_storage

    storage = get_storage(settings)
    days = catalog.validated_partitions(storage, dataset)[-SIZING_DAYS:]
    return [(ds, catalog.read_validated(storage, dataset, ds)) for ds in days]


def _add_project(
    plan: Plan,
    name: str,
    dataset: str,
    target: str | None,
    task: str | None,
    infos: dict[str, ColumnInfo],
    key: list[str],
    partition: dict[str, str] | None,
    start: str,
    settings: Settings,
) -> None:
    """Choose and render the project config when the target is known; else list the candidates."""
    from pipelines.scaffold.choices import ProjectDraft, choose_features, choose_target, sizes
    from pipelines.scaffold.profile import target_values
    from pipelines.scaffold.render import render_project

    if target is None:
        plan.result.update(project_written=False, candidates=_candidates(infos, key, partition))
        return
    task, threshold, why = choose_target(target, task, infos, key, plan.frames)
    numeric, categorical, expressions, excluded = choose_features(infos, target, key, partition)
    sz = sizes(plan.frames, task, target_values(plan.frames, target), categorical, infos)
    draft = ProjectDraft(
        name, dataset, target, task, threshold, why, numeric, categorical, expressions, excluded, start, sz
    )
    basis = (
        f"{sz['days']} sample day(s) of about {sz['rows_per_day']:.0f} rows"
        if plan.frames
        else "no sample (the repo's defaults)"
    )
    plan.files[settings.config_dir / f"{name}.yaml"] = render_project(draft, basis)
    plan.result.update(
        project_written=True,
        target=target,
        task=task,
        positive_threshold=threshold,
        features={"numeric": numeric, "categorical": categorical, "expressions": list(expressions)},
        excluded=excluded,
        sizes=sz,
    )


def _candidates(infos: dict[str, ColumnInfo], key: list[str], partition: dict[str, str] | None) -> dict[str, str]:
    """Columns that could be the target, each with the task it suggests."""
    skip = set(key) | set((partition or {}).values())
    out = {}
    for info in infos.values():
        if info.name in skip or info.id_like or info.logical_type not in ("integer", "number", "boolean"):
            continue
        binary = info.logical_type == "boolean" or (info.values and set(info.values) <= {0, 1})
        out[info.name] = f"{info.logical_type}: {'classification' if binary else 'regression'}"
    return out


def _listed(candidates: dict[str, str]) -> str:
    return ", ".join(f"{name} ({what})" for name, what in candidates.items()) or "none"


def _sample_summary(sample: Sample) -> dict[str, Any]:
    days = sample.known_days
    return {
        "path": str(sample.path),
        "files": sample.files,
        "days": len(sample.days),
        "days_found": sample.days_found,
        "first": days[0] if days else None,
        "last": days[-1] if days else None,
        "rows": sample.rows,
        "landing_format": sample.landing_format,
        "ready_marker": sample.ready_marker,
    }


def _next_steps(plan: Plan, name: str, dataset: str) -> list[str]:
    if not plan.result.get("project_written"):
        again = f" --sample {shlex.quote(str(plan.sample.path))}" if plan.sample else ""
        return [f"pipelines new-project {name} --dataset {dataset}{again} --target COLUMN"]
    sample = plan.result.get("sample") or {}
    first, last = sample.get("first"), sample.get("last")
    steps = ["review the lines marked REVIEW in " + ", ".join(plan.result.get("written", []))]
    if first:
        steps.append(f"pipelines validate --dataset {dataset} --ds {first} --to {last}")
    end = last or "YYYY-MM-DD"
    steps += [f"pipelines train --model {name} --end-ds {end}", f"pipelines gate --model {name}"]
    steps.append(f"pipelines score --model {name} --ds {end}")
    return steps


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, renamed over it."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- checks before anything is written


def _verify(plan: Plan, name: str, dataset: str, settings: Settings) -> None:
    """Load every file from a staging folder with the repo's loaders, and check a new contract on the sample."""
    import shutil
    import tempfile

    from pipelines.core.config import datasets_dir

    with tempfile.TemporaryDirectory(prefix="new-project-") as tmp:
        folders = {"config_dir": Path(tmp) / "configs", "contracts_dir": Path(tmp) / "contracts"}
        stage = settings.model_copy(update=folders)
        real_to_stage = {
            settings.config_dir: stage.config_dir,
            datasets_dir(settings): datasets_dir(stage),
            settings.contracts_dir: stage.contracts_dir,
        }
        datasets_dir(stage).mkdir(parents=True)
        stage.contracts_dir.mkdir(parents=True)
        for path, text in plan.files.items():
            (real_to_stage[path.parent] / path.name).write_text(text, encoding="utf-8")
        if not plan.result["new_dataset"]:
            shutil.copy(datasets_dir(settings) / f"{dataset}.yaml", datasets_dir(stage) / f"{dataset}.yaml")
        try:
            _load_staged(plan, name, dataset, stage, settings)
        except ConfigError as exc:
            message = str(exc)
            for real, staged in real_to_stage.items():
                message = message.replace(str(staged), str(real))
            raise ConfigError(f"the generated files do not pass (nothing written): {message}") from None


def _load_staged(plan: Plan, name: str, dataset: str, stage: Settings, settings: Settings) -> None:
    from pipelines.core.config import load_dataset, load_project
    from pipelines.core.contracts import load_contract
    from pipelines.core.features import feature_spec, make_features

    config = load_dataset(dataset, stage)
    folder = stage.contracts_dir if plan.result["new_dataset"] else settings.contracts_dir
    contract = load_contract(folder / config.contract)
    if plan.result["new_dataset"]:
        check_sample(contract, plan.sample)
    if not plan.result.get("project_written"):
        return
    project = load_project(name, stage)
    types = {c.name: c.logical_type for c in contract.columns}
    spec = feature_spec(project, contract.column_names, types)
    rows = [f.head(200) for _, f in plan.frames[:3]]
    for frame in rows:
        make_features(frame, spec)


def check_sample(contract: Contract, sample: Sample) -> None:
    """Run the contract's parse-stage and row rules over every sample day, as validation would.

    Raises:
        ConfigError: a sample row would be quarantined, or a halt rule would fire.
    """
    from pipelines.ingest.landing import ParsedFile, combine
    from pipelines.ingest.rules import compute_masks

    problems = []
    for day in sample.days:
        parsed = [ParsedFile(n, n, t) for n, t in day.tables if t.num_rows]
        if not parsed:  # an empty delivery halts on the empty_file rule, as it should
            continue
        batch = combine(parsed, contract)
        masks = compute_masks(contract, batch.frame, day.ds or "2000-01-01")
        for column, fails in batch.type_fail_cols.items():
            masks[f"type_mismatch ({column})"] = fails
        masks["missing_column"] = batch.missing_mask
        for rule_id, mask in masks.items():
            action = contract.rule(rule_id).action if rule_id in {r.id for r in contract.rules} else "quarantine"
            if action != "warn" and mask.any():
                problems.append(f"{day.ds or 'sample'}: {rule_id}: {int(mask.sum())} row(s)")
        counts = [r for r in contract.rules if r.kind == "row_count"]
        for rule in counts:
            lo, hi = rule.params["min"], rule.params["max"]
            if (lo is not None and len(batch.frame) < lo) or (hi is not None and len(batch.frame) > hi):
                problems.append(f"{day.ds or 'sample'}: {rule.id}: {len(batch.frame)} rows")
    if problems:
        raise ConfigError(f"{contract.source}: the sample does not pass its own contract: {'; '.join(problems[:10])}")
