"""Can a suite task run? Judged from declarations alone, before any data is read or any model is built.

A protocol declares what one task needs (``Protocol.requirements``: ``records.Requirements``), the other
splits it reads (``Protocol.requires``: role -> ``SplitRef``) and what it reads of each role
(``Protocol.ROLE_NEEDS``). Dataset loaders declare, on the class or as a property of their options,
``capabilities`` (labels, pairs, attributes), ``attribute_names`` and ``label_space``; a model class
declares ``heads``. ``check_requirements`` holds one against the other: it raises ConfigError naming the
split, the dataset and what to change (``validate`` puts the task's name in front), and returns notes on
what a declaration left open (attribute names known only once the data is read are noted, never passed).

Used by ``facebench validate`` (``suite.validate_suite``) and by ``run`` before its model loads.
"""

from __future__ import annotations

from facebench.errors import ConfigError, FacebenchError, did_you_mean


def static_heads(model: str) -> dict | None:
    """The heads a registered model declares on its class (``heads`` as a class attribute), found without
    building or loading the model; None when its heads are known only once an instance exists."""
    from facebench.registry import MODELS

    heads = getattr(MODELS.get(model), "heads", None)
    return dict(heads) if isinstance(heads, dict) else None


def static_default_head(model: str) -> str | None:
    """The head a registered model reads when a protocol names none, when its class declares it (else None)."""
    from facebench.registry import MODELS

    head = getattr(MODELS.get(model), "default_head", None)
    return head if isinstance(head, str) else None


def check_requirements(task, protocol, loader, heads: dict | None = None,
                       default_head: str | None = None) -> list[str]:
    """The task's ``Requirements`` and other splits against its dataset's declarations and, when given, the
    model's declared ``heads`` (name -> ``Head``; ``default_head`` the one read when the protocol names none).

    Checked, in order: the dataset's capabilities; the attribute names the protocol reads; the open-set
    unknowns (named unknown classes are dataset classes; by default, the dataset classes the head lacks
    are at least one); the head; each other split's dataset is registered and provides what its role
    reads. Nothing is loaded. Raises ConfigError; returns notes on what could not be judged.
    """
    req = protocol.requirements(task)
    notes: list[str] = []
    _check_capabilities(task, req, loader, notes)
    _check_attribute_names(task, req, loader, notes)
    _check_unknowns(task, req, loader, _head_labels(req, heads, default_head), heads is not None, notes)
    _check_heads(task, req, heads)
    _check_other_splits(task, protocol, loader, notes)
    return notes


def _check_capabilities(task, req, loader, notes: list[str]) -> None:
    caps = getattr(loader, "capabilities", None)
    if caps is None:
        notes.append(f"task {task.name!r}: dataset {task.dataset!r} declares no capabilities; whether it "
                     f"provides {', '.join(sorted(req.capabilities())) or 'what the protocol needs'} is found on "
                     f"loading")
    elif req.capabilities() - caps:
        missing = sorted(req.capabilities() - caps)
        raise ConfigError(f"protocol {task.protocol!r} needs {' and '.join(missing)}, which dataset {task.dataset!r} "
                          f"does not provide (it provides: {', '.join(sorted(caps)) or 'nothing'}).{_providers(missing)}")


def _check_attribute_names(task, req, loader, notes: list[str]) -> None:
    """Each attribute the protocol reads (e.g. fairness ``by``, ``target``, ``subject``) among those the
    dataset declares, with a did-you-mean."""
    if not req.attribute_names:
        return
    declared = getattr(loader, "attribute_names", None)
    if declared is None:
        notes.append(f"task {task.name!r}: dataset {task.dataset!r} names its attributes only once read; whether "
                     f"it has {', '.join(req.attribute_names)} is found on loading")
        return
    for name in req.attribute_names:
        if name not in declared:
            raise ConfigError(f"protocol {task.protocol!r} reads attribute {name!r}, which "
                              f"dataset {task.dataset!r} does not have.{did_you_mean(name, declared)} Its "
                              f"attributes: {', '.join(sorted(declared)) or '(none)'}.")


def _head_labels(req, heads: dict | None, default_head: str | None) -> tuple | None:
    """The class names of the head the task reads, when the model's declared heads tell which it is."""
    if not heads:
        return None
    name = req.head_name or default_head or (next(iter(heads)) if len(heads) == 1 else None)
    head = heads.get(name) if name is not None else None
    labels = getattr(head, "labels", None)
    return tuple(labels) if labels is not None else None


def _check_unknowns(task, req, loader, head_labels: tuple | None, model_given: bool, notes: list[str]) -> None:
    """Where an open-set protocol's unknown samples come from (``Requirements.unknowns``)."""
    if req.unknowns == "none":
        raise ConfigError(f"protocol {task.protocol!r} has no unknown samples: `unknown_classes` is empty and no "
                          f"`unknowns` split is given. Name them with `unknowns: [{{dataset, split}}]` or "
                          f"`unknown_classes: [...]`, or use `mode: leave_one_out`.")
    if req.unknowns not in ("classes", "dataset-classes") and not req.unknown_classes:
        return
    space = getattr(loader, "label_space", None)
    if space is None:
        notes.append(f"task {task.name!r}: dataset {task.dataset!r} declares no label space; its unknown classes "
                     f"are found on loading")
        return
    space = tuple(space)
    bad = [c for c in req.unknown_classes if c not in space]
    if bad:
        param = "open_classes" if req.unknowns == "leave-one-out" else "unknown_classes"
        raise ConfigError(f"{param} {bad} are not classes of dataset {task.dataset!r}."
                          f"{did_you_mean(bad[0], space)} Its classes: {', '.join(space)}.")
    if req.unknowns != "dataset-classes":
        return
    if head_labels is None:
        why = "the model's head is known" if model_given else "a model is given (`validate --model NAME`)"
        notes.append(f"task {task.name!r}: the unknown classes are the classes of {task.dataset!r} the head lacks; "
                     f"checked once {why}")
    elif all(c in head_labels for c in space):
        raise ConfigError(f"the unknown classes default to the classes of dataset "
                          f"{task.dataset!r} that the head lacks, and the head has all of them "
                          f"({', '.join(space)}): no sample would be unknown. Name them with "
                          f"`unknown_classes: [...]`, add `unknowns: [{{dataset, split}}]`, or use "
                          f"`mode: leave_one_out`.")


def _check_heads(task, req, heads: dict | None) -> None:
    if heads is not None and req.head and not heads:
        raise ConfigError(f"protocol {task.protocol!r} reads a model head, and the model declares none "
                          f"(features only).")
    if heads is not None and req.head and req.head_name is not None and req.head_name not in heads:
        raise ConfigError(f"protocol {task.protocol!r} reads head {req.head_name!r}, which the model does not "
                          f"have.{did_you_mean(req.head_name, heads)} Heads: {', '.join(heads) or '(none)'}.")


def _check_other_splits(task, protocol, loader, notes: list[str]) -> None:
    """Each split of ``protocol.requires(task)``: its dataset is registered, and its loader class declares
    the capabilities its role reads (``protocol.split_needs(role)``). A split of the task's own dataset is
    judged by the task's ``loader``."""
    from facebench.registry import DATASETS

    for role, ref in protocol.requires(task).items():
        own = ref.dataset == task.dataset
        if not own and ref.dataset not in DATASETS:
            raise ConfigError(f"the {role} split names dataset {ref.dataset!r}, which is not "
                              f"registered.{did_you_mean(ref.dataset, DATASETS.names())} Run `facebench list "
                              f"datasets` to see the datasets.")
        needs = protocol.split_needs(role)
        if not needs:
            continue
        caps = getattr(loader if own else DATASETS.get(ref.dataset), "capabilities", None)
        if caps is None:
            notes.append(f"task {task.name!r}: dataset {ref.dataset!r} ({role} split) declares no capabilities; "
                         f"whether it provides {' and '.join(sorted(needs))} is found on loading")
        elif needs - caps:
            missing = sorted(needs - caps)
            raise ConfigError(f"protocol {task.protocol!r} reads {' and '.join(missing)} of its "
                              f"{role} split, which dataset {ref.dataset!r} does not provide (it provides: "
                              f"{', '.join(sorted(caps)) or 'nothing'}).{_providers(missing)}")


def _providers(missing: list[str]) -> str:
    """' Datasets that provide them: ...' over the registered built-ins that declare the capabilities."""
    from facebench.registry import DATASETS

    names = []
    for name in DATASETS.names():
        try:
            caps = getattr(DATASETS.get(name), "capabilities", None)
        except FacebenchError:
            continue
        if caps is not None and set(missing) <= caps:
            names.append(name)
    return f" Datasets that provide {' and '.join(missing)}: {', '.join(names)}." if names else ""
