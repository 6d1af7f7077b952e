"""Bounded YAML loading for everything facebench reads from a user: suites, ``--tolerances``, ``--model-args``.

PyYAML's ``SafeLoader`` already refuses Python tags (``!!python/object``), but it follows aliases to
shared objects: a "billion laughs" document of a few hundred bytes becomes a tree of 10**9 nodes as
soon as anything copies or serialises it (``copy.deepcopy``, ``json.dumps``, a fingerprint). The
``BoundedLoader`` here measures while composing, before any object is built, and stops with a
``YamlError`` (a ``ConfigError`` that carries the 1-based line) when a document exceeds

- ``MAX_BYTES`` of text (checked before parsing),
- ``MAX_DEPTH`` levels of nested lists / mappings,
- ``MAX_ALIASES`` alias uses (``*name``),
- ``MAX_EXPANDED`` units of expanded size: every node counts 1 plus the length of its scalar text,
  and an alias counts the full expanded size of what it points to (so the count is what a deep
  copy would hold);

and also on recursive aliases (``&a [*a]``), duplicate keys in one mapping, and text that is not UTF-8.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from facebench.errors import YamlError  # noqa: F401 - re-exported: it lived here

MAX_BYTES = 1 << 20  # 1 MiB
MAX_DEPTH = 64
MAX_ALIASES = 1000
MAX_EXPANDED = 1_000_000


class _Limit(yaml.YAMLError):
    """Raised inside the loader; turned into ``YamlError`` by ``load``."""

    def __init__(self, line: int | None, problem: str):
        self.line, self.problem = line, problem
        super().__init__(problem)


def _line(mark) -> int | None:
    return mark.line + 1 if mark is not None else None


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the limits of this module (subclass it to add constructors)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._sizes: dict[int, int] = {}  # id(node) -> expanded size, set once the node is complete

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = _line(event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Limit(line, f"more than {MAX_ALIASES} aliases (*name); a suite needs few. "
                                   f"Write the values out, or split the file.")
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise _Limit(line, f"alias *{event.anchor} refers to a node that contains it (a recursive "
                                   f"alias); remove the alias.")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Limit(line, f"nesting deeper than {MAX_DEPTH} levels; flatten the structure.")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._measure(node, line)
        return node

    def _measure(self, node, line: int | None) -> None:
        if isinstance(node, yaml.ScalarNode):
            size = 1 + len(node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(c)] for c in node.value)
        else:
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            _check_duplicates(node)
        if size > MAX_EXPANDED:
            raise _Limit(line, f"the document expands to more than {MAX_EXPANDED:,} nodes and characters once "
                               f"its aliases are followed (an alias bomb?); write the values out instead.")
        self._sizes[id(node)] = size


def _check_duplicates(node: yaml.MappingNode) -> None:
    seen: dict[tuple, int | None] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        ident = (key.tag, key.value)
        if ident in seen:
            raise _Limit(_line(key.start_mark), f"duplicate key {key.value!r} (first on line {seen[ident]}); "
                                                f"keep one of them.")
        seen[ident] = _line(key.start_mark)


def load(text: str | bytes, source: str = "<yaml>", loader: type[BoundedLoader] = BoundedLoader) -> Any:
    """Parse one YAML document under the limits; raises ``YamlError`` naming ``source`` and the line."""
    if isinstance(text, bytes):
        text = _decode(text, source)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlError(source, None, f"larger than {MAX_BYTES // 1024} KiB; a configuration file never needs "
                                      f"that much. Is this the right file?")
    try:
        return yaml.load(text, Loader=loader)
    except _Limit as err:
        raise YamlError(source, err.line, err.problem) from None
    except yaml.constructor.ConstructorError as err:
        tag = re.search(r"tag '([^']*)'", str(err))
        problem = (f"the tag {tag.group(1).replace('tag:yaml.org,2002:', '!!')} is not allowed: facebench reads "
                   f"plain YAML (mappings, lists, strings, numbers, booleans, null) only." if tag
                   else " ".join(str(err.problem or err).split()))
        raise YamlError(source, _line(err.problem_mark), problem) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = " ".join(str(err).replace('"<unicode string>", ', "").split())
        raise YamlError(source, _line(mark), f"invalid YAML: {problem}") from None
    except (RecursionError, MemoryError):
        raise YamlError(source, None, "invalid YAML: the document is too deeply nested or too large.") from None


def load_file(path: str | Path, loader: type[BoundedLoader] = BoundedLoader) -> Any:
    """``load`` of a file: refuses folders, missing or unreadable files and files over ``MAX_BYTES``
    before reading them."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raise YamlError(source, None, "is a folder, not a YAML file.")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise YamlError(source, None, f"is {size / 2**20:.1f} MiB, larger than the {MAX_BYTES // 1024} KiB "
                                          f"allowed for a configuration file. Is this the right file?")
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise YamlError(source, None, "not found.") from None
    except OSError as err:
        raise YamlError(source, None, f"cannot be read ({err.strerror or err}).") from None
    return load(data, source, loader)


def _decode(data: bytes, source: str) -> str:
    if len(data) > MAX_BYTES:
        raise YamlError(source, None, f"larger than {MAX_BYTES // 1024} KiB; a configuration file never needs "
                                      f"that much. Is this the right file?")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise YamlError(source, line, f"not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
                                      f"save the file as UTF-8.") from None
