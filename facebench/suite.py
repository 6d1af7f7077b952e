"""YAML suites: tasks (dataset + split + protocol + parameters) and run defaults.

Example::

    name: demo
    defaults: {batch_size: 256, device: auto, seed: 0, bootstrap: 1000}
    tasks:
      - name: synth-closed-set
        dataset: synth
        split: test
        protocol: closed_set
        params: {unsupported_classes: drop}

Validation collects every problem with its line number; unknown keys get a did-you-mean.
"""

from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facebench import settings
from facebench.errors import ConfigError, FacebenchError, SuiteError, did_you_mean
from facebench.compat import check_requirements, static_default_head, static_heads  # noqa: F401  (moved; callers import them here)
from facebench.records import SplitRef
from facebench.safe_yaml import BoundedLoader, YamlError
from facebench.safe_yaml import load_file as _load_yaml_file

DEFAULTS: dict[str, Any] = settings.defaults()  # generated from facebench.settings.SETTINGS
DEFAULT_TYPES: dict[str, tuple] = {s.name: s.types for s in settings.SETTINGS}
TOP_KEYS = {"name": (str,), "description": (str,), "defaults": (dict,), "tasks": (list,)}
TASK_KEYS = {"name": (str,), "dataset": (str,), "split": (str,), "protocol": (str,), "params": (dict,),
             "dataset_args": (dict,), "path": (str,), "description": (str,)}
REQUIRED_TASK_KEYS = ("name", "dataset", "protocol")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME = 100


def name_problem(value, what: str) -> str | None:
    """Why ``value`` cannot name a suite, task or model (they become folder, file and array names), or None.

    The rule: 1 to 100 characters of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit, no ``..``.
    """
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or len(value) > MAX_NAME or ".." in value:
        return (f"{what} {value!r} is not a safe name: use 1 to {MAX_NAME} letters, digits, '.', '_' or '-', "
                f"starting with a letter or digit, without '..' (names become folder and file names).")
    return None


def check_name(value, what: str) -> str:
    """``value`` if it is a safe name (see ``name_problem``), else a ConfigError."""
    problem = name_problem(value, what)
    if problem:
        raise ConfigError(problem)
    return value


def _stem_name(path: Path) -> str:
    """A suite without ``name:`` is named after its file, unsafe characters replaced by '-'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).replace("..", "-").strip("._-")[:MAX_NAME]
    return stem or "suite"


class _LineDict(dict):
    """A dict that remembers the line (1-based) of each key and of itself."""

    lines: dict
    line: int


class _LineLoader(BoundedLoader):
    """The bounded loader (size, depth, aliases, duplicate keys: facebench.safe_yaml) with line numbers."""


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    mapping = _LineDict()
    mapping.lines = {}
    mapping.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool, type(None))):
            raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value, not a list or "
                                                    "mapping", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass
class Problem:
    line: int | None
    message: str

    def format(self, file: str) -> str:
        return f"{file}:{self.line}: {self.message}" if self.line else f"{file}: {self.message}"


@dataclass
class Task:
    """One suite task: protocol ``protocol`` with ``params`` on one dataset split, ``ref`` (a ``SplitRef``,
    the same record protocols use for the other splits they read). ``dataset``, ``split``, ``path`` and
    ``dataset_args`` read through to it. Build one from a suite's fields with ``Task.of(...)``."""

    name: str
    protocol: str
    ref: SplitRef
    params: dict = field(default_factory=dict)
    description: str = ""
    line: int | None = None

    @classmethod
    def of(cls, name: str, dataset: str, protocol: str, split: str = "test", params: dict | None = None,
           dataset_args: dict | None = None, path: str | None = None, description: str = "",
           line: int | None = None) -> "Task":
        return cls(name, protocol, SplitRef(dataset, split, path, dict(dataset_args or {})), dict(params or {}),
                   description, line)

    dataset = property(lambda self: self.ref.dataset, doc="the registered dataset name")
    split = property(lambda self: self.ref.split)
    path = property(lambda self: self.ref.path, doc="the dataset's folder, or None for the loader's default")
    dataset_args = property(lambda self: self.ref.dataset_args, doc="options of the dataset loader")

    def to_dict(self) -> dict:
        return {"name": self.name, "dataset": self.dataset, "split": self.split, "protocol": self.protocol,
                "params": dict(self.params), "dataset_args": dict(self.dataset_args), "path": self.path}


@dataclass
class Suite:
    name: str
    file: str
    tasks: list[Task]
    defaults: dict
    description: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "defaults": _plain(self.defaults),
                "tasks": [t.to_dict() for t in self.tasks]}


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _type_name(types: tuple) -> str:
    names = {int: "an integer", str: "a string", float: "a number", bool: "true/false", dict: "a mapping",
             list: "a list", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_type(value, types: tuple) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


def _check_keys(mapping: dict, allowed: dict, where: str, problems: list[Problem]) -> None:
    lines = getattr(mapping, "lines", {})
    for key, value in mapping.items():
        if key not in allowed:
            problems.append(Problem(lines.get(key), f"unknown key {key!r} in {where}.{did_you_mean(key, allowed)} "
                                                    f"Allowed keys: {', '.join(allowed)}."))
        elif not _check_type(value, allowed[key]):
            problems.append(Problem(lines.get(key), f"{where}: {key!r} must be {_type_name(allowed[key])}, "
                                                    f"got {value!r}."))


def _read_defaults(given, problems: list[Problem]) -> dict:
    """Every setting's default with the suite's ``defaults:`` over it; unknown keys and values of the wrong
    type or out of range (``facebench.settings.check_value``) become problems with their line."""
    out = settings.defaults()
    if not isinstance(given, dict):
        return out  # None (no defaults), or a wrong type reported by the top-level key check
    lines = getattr(given, "lines", {})
    for key, value in given.items():
        if key not in settings.BY_NAME:
            hint = did_you_mean(key, DEFAULTS)
            problems.append(Problem(lines.get(key), f"unknown key {key!r} in defaults.{hint} "
                                                    f"Allowed keys: {', '.join(DEFAULTS)}."))
            continue
        problem = settings.check_value(key, value)
        if problem:
            problems.append(Problem(lines.get(key), f"defaults: {problem}"))
        else:
            out[key] = _plain(value)
    return out


def _read_overrides(overrides: dict | None, problems: list[Problem]) -> dict:
    """The overrides (command line, API) that are given (not None), each checked as a suite default is."""
    out = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        problem = settings.check_value(key, value)
        if problem:
            problems.append(Problem(None, f"override: {problem}"))
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_suite(path: str | Path, overrides: dict | None = None) -> Suite:
    """Parse and structurally validate a suite; raises SuiteError listing every problem."""
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise ConfigError(f"Suite file {file} not found. Suites shipped with facebench live in suites/ "
                          f"(e.g. suites/demo.yaml).")
    try:
        raw = _load_yaml_file(path, loader=_LineLoader)
    except YamlError as err:
        raise SuiteError(file, [Problem(err.line, err.problem)]) from None
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        raise SuiteError(file, [Problem(None, "a suite must be a mapping with `tasks:` (and optional `defaults:`)")])
    _check_keys(raw, TOP_KEYS, "the suite", problems)
    if isinstance(raw.get("name"), str) and name_problem(raw["name"], "suite name"):
        problems.append(Problem(raw.lines.get("name"), name_problem(raw["name"], "suite name")))

    defaults = _read_defaults(raw.get("defaults"), problems)
    defaults.update(_read_overrides(overrides, problems))

    tasks: list[Task] = []
    raw_tasks = raw.get("tasks")
    if not raw_tasks:
        problems.append(Problem(getattr(raw, "line", None), "the suite has no `tasks:` list."))
        raw_tasks = []
    seen: set[str] = set()
    for i, item in enumerate(raw_tasks if isinstance(raw_tasks, list) else []):
        if not isinstance(item, dict):
            problems.append(Problem(getattr(raw, "lines", {}).get("tasks"), f"task #{i + 1} must be a mapping."))
            continue
        where = f"task {item.get('name', '#' + str(i + 1))!r}"
        _check_keys(item, TASK_KEYS, where, problems)
        missing = [k for k in REQUIRED_TASK_KEYS if k not in item]
        if missing:
            problems.append(Problem(item.line, f"{where} is missing {', '.join(missing)}."))
            continue
        if isinstance(item["name"], str) and name_problem(item["name"], "task name"):
            problems.append(Problem(item.lines.get("name"), name_problem(item["name"], "task name")))
        if not all(_check_type(item[k], TASK_KEYS[k]) for k in REQUIRED_TASK_KEYS):
            continue  # reported by _check_keys
        if item["name"] in seen:
            problems.append(Problem(item.lines.get("name"), f"duplicate task name {item['name']!r}."))
        seen.add(item["name"])
        kwargs = {k: item[k] for k in TASK_KEYS if k in item and _check_type(item[k], TASK_KEYS[k])}
        tasks.append(Task.of(line=item.line, **{k: (_plain(v) if isinstance(v, dict) else v) for k, v in kwargs.items()}))
    if problems:
        raise SuiteError(file, problems)
    return Suite(name=raw.get("name") or _stem_name(path), file=file, tasks=tasks, defaults=_plain(defaults),
                 description=raw.get("description", ""))


def make_loader(task: Task, data_root: str | None):
    """Instantiate the task's dataset loader; unknown dataset_args get a did-you-mean. ``transform``
    (any dataset) wraps it in ``facebench.data.transforms.TransformedLoader``; ``detector`` (any dataset of
    image files) is checked here and run by the execute step (``facebench.pipeline.detect``)."""
    from facebench.registry import DATASETS

    loader_cls = DATASETS.get(task.dataset)
    args = dict(task.dataset_args)
    transform = args.pop("transform", None)  # any dataset: see facebench.data.transforms
    detector = args.pop("detector", None)  # any dataset of image files: see facebench.pipeline.detect
    attack = args.pop("attack", None)  # any dataset: adversarial inputs made in the execute step
    if attack is not None:
        from facebench.data.attack_spec import parse_attack
        from facebench.pipeline.attack_stage import check_attack_models

        check_attack_models(parse_attack(attack))
    if detector is not None:
        from facebench.pipeline.detect import check_detector_model, parse_detector

        check_detector_model(parse_detector(detector))
    _check_kwargs(loader_cls, args, f"dataset {task.dataset!r} (dataset_args)")
    loader = loader_cls(path=task.path, data_root=data_root, **args)
    if transform is not None:
        from facebench.data.transforms import TransformedLoader

        loader = TransformedLoader(loader, transform)
    return loader


def make_protocol(task: Task):
    from facebench.registry import PROTOCOLS

    return PROTOCOLS.get(task.protocol)(**task.params)


def _check_kwargs(factory, kwargs: dict, what: str) -> None:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n in params if n not in ("self", "path", "data_root")]
    for key in kwargs:
        if key not in params:
            raise ConfigError(f"{what} has no option {key!r}.{did_you_mean(key, allowed)} "
                              f"Options: {', '.join(allowed) or '(none)'}.")


def _scan_images(task, loader, ref_loaders: dict, policy: str, notes: list[str]) -> None:
    """The run's header scan of the task's image files (``on_bad_image``): ``error`` raises, ``skip`` notes."""
    from facebench.data.scan import screen_dataset

    splits = [(task.split, loader)] + [(ref.split, ref_loader) for ref, ref_loader in ref_loaders.values()]
    for split, split_loader in splits:
        if not getattr(split_loader, "needs_files", True):
            continue  # generated data (synthetic faces, procedural noise): no file to read, nothing to render here
        screen_dataset(split_loader.load(split), policy, lambda msg: notes.append(f"task {task.name!r}: {msg}"))


def _check_attacks(model: str, refs) -> None:
    """Each attacked split (``dataset_args: {attack}``) against the model's class (differentiable or not)."""
    from facebench.data.attack_spec import parse_attack
    from facebench.pipeline.attack_stage import check_attack_models

    for ref in refs:
        if "attack" in ref.dataset_args:
            check_attack_models(parse_attack(ref.dataset_args["attack"]), model)


def validate_suite(path: str | Path, overrides: dict | None = None, check_data: bool = True,
                   model: str | None = None) -> tuple[Suite, list[str]]:
    """Full validation without running: structure, registries, parameters (types and ranges), each
    protocol's requirements against its dataset's capabilities and, with ``model``, the heads the model
    declares on its class; then data folders. No model is built and no image is decoded for this.

    Returns the suite and a list of notes (e.g. tasks whose data will be skipped); raises
    SuiteError with every problem found.
    """
    suite = load_suite(path, overrides)
    problems: list[Problem] = []
    notes: list[str] = []
    heads = default_head = None
    if model is not None:
        heads, default_head = static_heads(model), static_default_head(model)
        if heads is None:
            notes.append(f"model {model!r} declares its heads only once built; the head check is left to `run`")
    for task in suite.tasks:
        try:
            protocol = make_protocol(task)
            loader = make_loader(task, suite.defaults.get("data_root"))
            notes.extend(check_requirements(task, protocol, loader, heads, default_head))
            ref_loaders = {role: (ref, make_loader(ref, suite.defaults.get("data_root")))
                           for role, ref in protocol.requires(task).items()}
            if model is not None:  # white-box attacks need a differentiable model
                _check_attacks(model, [task.ref, *(ref for ref, _ in ref_loaders.values())])
            if check_data:
                loader.check(task.split)
                absent = set()
                for role, (ref, ref_loader) in ref_loaders.items():
                    try:
                        ref_loader.check(ref.split)
                    except FacebenchError as err:
                        if ref.optional and suite.defaults["missing_data"] == "skip":
                            notes.append(f"task {task.name!r} will leave out {role}: {str(err).splitlines()[0]}")
                            absent.add(role)
                        else:
                            raise
                _scan_images(task, loader, {r: v for r, v in ref_loaders.items() if r not in absent},
                             suite.defaults["on_bad_image"], notes)
        except FacebenchError as err:
            from facebench.errors import DatasetNotFoundError

            if isinstance(err, DatasetNotFoundError) and suite.defaults["missing_data"] == "skip":
                notes.append(f"task {task.name!r} will be skipped: {str(err).splitlines()[0]}")
            else:
                problems.append(Problem(task.line, f"task {task.name!r}: {err}"))
    if problems:
        raise SuiteError(suite.file, problems)
    return suite, notes
