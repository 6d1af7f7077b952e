"""Step 1, plan: what to load, predict and evaluate, with everything that can fail cheaply failing first.

``plan_tasks`` builds each task's protocol and loader, checks the protocol's requirements against the dataset's
capabilities and checks that every split's data is there (``missing_data: skip`` turns absent data into a
skipped task or a left-out optional split). ``screen`` loads every split and scans its image files
(``on_bad_image``). After the model is built, ``resolve_heads`` picks each task's head and ``split_work``
lists each dataset split once (keyed by ``SplitRef.key()``) with the heads and features its readers need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from facebench.data.scan import screen_splits
from facebench.errors import ConfigError, DatasetNotFoundError
from facebench.records import SplitRef
from facebench.suite import Suite, Task, check_requirements, make_loader, make_protocol


@dataclass
class PlannedTask:
    """One suite task on its way through the run: its protocol, its loader, the other splits it reads
    (``refs``: role -> SplitRef, with ``ref_loaders``), and whether it still runs (``status`` ok / skipped)."""

    task: Task
    protocol: Any
    loader: Any
    refs: dict = field(default_factory=dict)
    ref_loaders: dict = field(default_factory=dict)
    skipped_refs: dict = field(default_factory=dict)  # role -> why (optional splits whose data is absent)
    status: str = "ok"
    reason: str = ""
    head: str | None = None

    def skip(self, reason: str) -> None:
        self.status, self.reason = "skipped", reason

    def splits(self) -> list[tuple[SplitRef, Any]]:
        """(split, loader) for the task's own split and each other split it reads."""
        return [(self.task.ref, self.loader), *((ref, self.ref_loaders[role]) for role, ref in self.refs.items())]


@dataclass
class SplitWork:
    """One dataset split to load, and to predict when some task reads its predictions (``heads``, ``features``).
    ``dataset`` / ``bad_images`` come from ``screen``; ``preds`` / ``report`` / ``load_s`` from ``execute``, and
    ``detection`` (the declared detector's summary) when the split declares one (``facebench.pipeline.detect``)."""

    ref: SplitRef
    dataset: Any = None
    bad_images: dict | None = None
    heads: set = field(default_factory=set)
    predictions: bool = False
    features: bool = False
    preds: Any = None
    report: Any = None
    load_s: float = 0.0
    detection: dict | None = None


def plan_tasks(suite: Suite, log: Callable[[str], None]) -> list[PlannedTask]:
    """Every task built and checked, its data found (or the task skipped under ``missing_data: skip``)."""
    d = suite.defaults
    planned = []
    for task in suite.tasks:
        protocol = make_protocol(task)
        loader = make_loader(task.ref, d.get("data_root"))
        item = PlannedTask(task, protocol, loader, refs=dict(protocol.requires(task)))
        try:  # the protocol's needs against the dataset's declared capabilities, as `facebench validate` checks
            check_requirements(task, protocol, loader)
        except ConfigError as err:
            raise ConfigError(f"task {task.name!r}: {err}") from None
        item.ref_loaders = {role: make_loader(ref, d.get("data_root")) for role, ref in item.refs.items()}
        try:
            loader.check(task.split)
            _check_other_splits(item, d["missing_data"], log)
        except DatasetNotFoundError as err:
            if d["missing_data"] != "skip":
                raise DatasetNotFoundError(f"task {task.name!r}: {err}\n(nothing was run; set `defaults: "
                                           f"{{missing_data: skip}}` to skip tasks whose data is absent)") from None
            item.skip(str(err).splitlines()[0])
            log(f"skip {task.name}: {item.reason}")
        planned.append(item)
    return planned


def _check_other_splits(item: PlannedTask, missing_data: str, log: Callable[[str], None]) -> None:
    """Each other split's data is there; an absent optional one is left out under ``missing_data: skip``."""
    for role, ref in list(item.refs.items()):
        try:
            item.ref_loaders[role].check(ref.split)
        except DatasetNotFoundError as err:
            if not (ref.optional and missing_data == "skip"):
                raise DatasetNotFoundError(f"{role} split ({ref.dataset}/{ref.split}): {err}") from None
            item.skipped_refs[role] = str(err).splitlines()[0]
            del item.refs[role], item.ref_loaders[role]
            log(f"{item.task.name}: leaving out {role} ({ref.dataset}/{ref.split}): {item.skipped_refs[role]}")


def screen(planned: list[PlannedTask], on_bad_image: str, log: Callable[[str], None], limit: int | None = None) -> dict:
    """Split key -> (dataset, bad-image summary): every split of every runnable task loaded once (cut to
    ``limit`` samples or pairs when given) and its image files scanned under the ``on_bad_image`` policy,
    before the model loads."""
    splits = ((ref.key(), loader, ref.split) for item in planned if item.status == "ok"
              for ref, loader in item.splits())
    return screen_splits(splits, on_bad_image, log, limit)


def select_tasks(suite, patterns: list | None = None):
    """``suite`` with only the tasks whose names match one of the glob ``patterns`` (default: the suite's
    ``tasks`` setting; None: all); a pattern that matches no task is a ConfigError naming the tasks."""
    patterns = suite.defaults.get("tasks") if patterns is None else patterns
    if not patterns:
        return suite
    import dataclasses
    import fnmatch

    names = [t.name for t in suite.tasks]
    unmatched = [p for p in patterns if not fnmatch.filter(names, str(p))]
    if unmatched:
        raise ConfigError(f"--tasks {unmatched[0]!r} matches no task of suite {suite.name!r}; its tasks: "
                          f"{', '.join(names)}.")
    kept = [t for t in suite.tasks if any(fnmatch.fnmatchcase(t.name, str(p)) for p in patterns)]
    return dataclasses.replace(suite, tasks=kept)


def head_of_kind(adapter, kind: str | None, dataset: str) -> str | None:
    """The head a protocol that reads heads of ``kind`` uses when its task names none: the model's default head
    when it is of that kind, else the one of that kind whose task name the dataset's name contains (Faceptor's
    ``parsing_lapa`` for ``lapa``, ``parsing_celebam`` for ``celebamask-hq``), else the first of that kind; None
    (the default head) when the protocol names no kind or the model has no head of it."""
    if kind is None:
        return None
    heads = getattr(adapter, "heads", {}) or {}
    default = heads.get(getattr(adapter, "default_head", None))
    if default is not None and default.kind == kind:
        return None
    of_kind = [name for name, head in heads.items() if head.kind == kind]
    dataset = str(dataset).lower().replace("-", "").replace("_", "")
    for name in of_kind:
        task = name.split("_", 1)[-1].lower().replace("-", "")
        if task and task in dataset:
            return name
    return of_kind[0] if of_kind else None


def resolve_heads(planned: list[PlannedTask], adapter, suite_name: str, model: str,
                  log: Callable[[str], None]) -> None:
    """Each runnable task's head on the built model (None for a features-only protocol). A task whose head
    the model lacks is skipped; a suite where no task can run with this model is a ConfigError."""
    skipped_here = False
    for item in planned:
        if item.status != "ok":
            continue
        needs = item.protocol.requirements(item.task)
        if not needs.head:
            item.head = None  # features only (e.g. verification embeddings)
            continue
        wanted = getattr(item.protocol.params, "head", None) or head_of_kind(adapter, needs.head_kind,
                                                                              item.task.dataset)
        try:
            item.head = adapter.resolve_heads([wanted] if wanted else None)[0]
        except ConfigError as err:  # a suite may hold tasks for several kinds of model
            item.skip(str(err))
            skipped_here = True
            log(f"skip {item.task.name}: {err}")
    if skipped_here and all(item.status != "ok" for item in planned):
        reasons = "; ".join(f"{i.task.name}: {i.reason}" for i in planned)
        raise ConfigError(f"no task of suite {suite_name!r} can run with model {model!r}: {reasons}")
    from facebench.pipeline.attack_stage import check_planned_attacks

    check_planned_attacks(planned, adapter)  # white-box attacks need a differentiable model: refused before any run


def split_work(planned: list[PlannedTask], screened: dict) -> dict[str, SplitWork]:
    """Split key -> SplitWork: each dataset split once, with every head and feature its readers need."""
    work: dict[str, SplitWork] = {}
    for item in planned:
        if item.status != "ok":
            continue
        req = item.protocol.requirements(item.task)
        readers = [(item.task.ref, True, req.features), *((r, r.predictions, r.features) for r in item.refs.values())]
        for ref, predicted, features in readers:
            unit = work.get(ref.key())
            if unit is None:
                dataset, bad = screened[ref.key()]
                unit = work[ref.key()] = SplitWork(ref, dataset, bad)
            if predicted:
                unit.predictions = True
                unit.heads |= {item.head} if item.head is not None else set()
                unit.features |= features
    return work
