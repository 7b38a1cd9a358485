"""Read a mapping file into a YAML tree; every way it can fail is a ``ConfigError`` naming
file and line.

Before ruamel builds the tree (recursively, and slowly on deep flow nesting), one pass over
its parser events refuses what would crash or mislead it: nesting deeper than
``MAX_DEPTH``, a duplicate key (named with both lines, never its values), a list or
mapping used as a key, a value longer than ``MAX_SCALAR``.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from revsync.errors import ConfigError

MAX_BYTES = 1_000_000
MAX_DEPTH = 32
MAX_SCALAR = 4_096
MAX_NODES = 100_000
# What YAML 1.2 allows in a file (its "printable" set); anything else is refused up front.
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def format_key_path(keys: list[str | int] | tuple[str | int, ...]) -> str:
    """``sources[0].timezone``."""
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def read_document(path: Path) -> CommentedMap:
    """The mapping file's top-level YAML mapping."""
    text = _decode(path, _read_bytes(path))
    _check_events(path, text)
    try:
        document = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        raise ConfigError(_marked(path, exc)) from None
    except YAMLError as exc:  # unmarked: the problem is the file as a whole
        raise ConfigError(f"{path}:1: invalid YAML: {type(exc).__name__}") from None
    except (ValueError, TypeError, ArithmeticError):  # a scalar ruamel cannot build
        raise ConfigError(_unbuildable(path, text)) from None
    if not isinstance(document, CommentedMap):
        raise ConfigError(f"{path}:1: the mapping file must be a YAML mapping (key: value)")
    return document


def plain(node: Any, path: Path) -> Any:
    """The tree as dicts and lists (merges and aliases expanded), within ``MAX_NODES``
    values and ``MAX_DEPTH`` levels: an alias that refers to itself or expands a thousand-
    fold is refused, not followed."""
    budget = [MAX_NODES]

    def walk(value: Any, depth: int) -> Any:
        budget[0] -= 1
        if isinstance(value, CommentedMap | CommentedSeq):
            if depth > MAX_DEPTH or budget[0] < 0:
                line = _node_line(value)
                raise ConfigError(
                    f"{path}:{line}: aliases expand to more than {MAX_NODES:,} values or "
                    f"{MAX_DEPTH} levels (an alias inside its own anchor?)"
                )
            if isinstance(value, CommentedMap):
                return {str(k): walk(v, depth + 1) for k, v in value.items()}
            return [walk(v, depth + 1) for v in value]
        return value

    return walk(node, 0)


def key_line(node: CommentedMap, key: Any) -> int | None:
    """The 1-based line of ``key`` in ``node``, looking into ``<<:`` merges; None if the
    tree does not know (tagged and merged nodes keep no positions)."""
    data = getattr(getattr(node, "lc", None), "data", None)
    if isinstance(data, dict) and isinstance(data.get(key), list):
        return int(data[key][0]) + 1
    for merged in getattr(node, "merge", None) or ():
        merged = merged[1] if isinstance(merged, tuple) else merged
        if isinstance(merged, CommentedMap) and key in merged:
            line = key_line(merged, key)
            if line is not None:
                return line
    return None


def item_line(node: CommentedSeq, index: int) -> int | None:
    data = getattr(getattr(node, "lc", None), "data", None)
    if isinstance(data, dict) and isinstance(data.get(index), list):
        return int(data[index][0]) + 1
    return None


def _node_line(node: Any) -> int:
    line = getattr(getattr(node, "lc", None), "line", None)
    return line + 1 if isinstance(line, int) else 1


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(
                f"{path}:1: {size:,} bytes; a mapping file is a few KB (max {MAX_BYTES:,})"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (hint: run `revsync init {path}`)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or type(exc).__name__}") from None
    except ValueError as exc:  # a NUL in the path
        raise ConfigError(f"{path!r}: {exc}") from None


def _decode(path: Path, data: bytes) -> str:
    boms = {codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32",
            codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16"}  # fmt: skip
    for bom, name in boms.items():
        if data.startswith(bom):
            raise ConfigError(f"{path}:1: the file is {name}; save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        hint = " (a UTF-16 file? save it as UTF-8)" if bad.group() == "\0" else ""
        raise ConfigError(
            f"{path}:{line}: control character U+{ord(bad.group()):04X} at column {column} "
            f"is not allowed in YAML; remove it{hint}"
        )
    return text


@dataclass
class _Frame:
    key: str | int | None
    is_map: bool
    line: int
    count: int = 0  # events seen inside: a mapping's keys are the even ones
    pending: str | int | None = None
    seen: dict[str, int] = field(default_factory=dict)


def _check_events(path: Path, text: str) -> None:
    stack: list[_Frame] = []

    def where(key: str | int | None = None) -> str:
        keys = [f.key for f in stack[1:] if f.key is not None]
        return format_key_path(keys + ([key] if key is not None else [])) or "(top level)"

    try:
        for event in YAML(typ="rt").parse(text):
            if isinstance(event, CollectionEndEvent):
                stack.pop()
                continue
            if not isinstance(event, NodeEvent):
                continue
            line = event.start_mark.line + 1
            key: str | int | None = None
            if stack:
                parent = stack[-1]
                if parent.is_map and parent.count % 2 == 0:  # this node is a key
                    parent.count += 1
                    if isinstance(event, CollectionStartEvent):
                        raise ConfigError(
                            f"{path}:{line}: {where()}: a key must be a plain name, "
                            "not a list or mapping"
                        )
                    name = event.value if isinstance(event, ScalarEvent) else "*alias"
                    if isinstance(event, ScalarEvent) and name in parent.seen:
                        raise ConfigError(
                            f"{path}:{line}: {where(name)}: duplicate key "
                            f"(first at line {parent.seen[name]}); keep one"
                        )
                    if isinstance(event, ScalarEvent):
                        parent.seen[name] = line
                    parent.pending = name[:80]
                    continue
                parent.count += 1
                key = parent.pending if parent.is_map else parent.count - 1
            if isinstance(event, ScalarEvent) and len(event.value) > MAX_SCALAR:
                raise ConfigError(
                    f"{path}:{line}: {where(key)}: a value longer than {MAX_SCALAR:,} characters"
                )
            if isinstance(event, CollectionStartEvent):
                stack.append(_Frame(key, isinstance(event, MappingStartEvent), line))
                if len(stack) > MAX_DEPTH:
                    raise ConfigError(
                        f"{path}:{line}: {where()}: nested deeper than {MAX_DEPTH} levels"
                    )
    except MarkedYAMLError as exc:
        raise ConfigError(_marked(path, exc)) from None
    except YAMLError as exc:
        raise ConfigError(f"{path}:1: invalid YAML: {type(exc).__name__}") from None


def _unbuildable(path: Path, text: str) -> str:
    """Which scalar failed to build (``2026-13-01``, ``!!int x``): its line and key path,
    never its value."""
    yaml = YAML(typ="rt")
    todo: list[tuple[Node, list[str | int]]] = [(yaml.compose(text), [])]
    seen: set[int] = set()  # an alias is the same node: visit it once
    while todo:
        node, keys = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            todo += [(v, [*keys, k.value if isinstance(k, ScalarNode) else "?"])
                     for k, v in node.value]  # fmt: skip
        elif isinstance(node, SequenceNode):
            todo += [(v, [*keys, i]) for i, v in enumerate(node.value)]
        elif isinstance(node, ScalarNode):
            try:
                yaml.constructor.construct_object(node, deep=True)
            except (ValueError, TypeError, ArithmeticError, YAMLError):
                kind = str(node.tag).rsplit(":", 1)[-1]
                where = format_key_path(keys) or "(top level)"
                return f"{path}:{node.start_mark.line + 1}: {where}: not a valid {kind} value"
    return f"{path}:1: invalid YAML: a value that cannot be read"


def _marked(path: Path, exc: MarkedYAMLError) -> str:
    """A YAML error at its line; never its quoted values (a duplicate key's would be)."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    problem = str(exc.problem or exc.context or "unreadable")
    if "duplicate key" in problem:
        problem = "duplicate key"
    return f"{path}:{line}: invalid YAML: {problem}"
