"""Safe YAML loading that remembers line numbers, so every spec problem can say FILE:LINE.

Values come back as plain dicts, lists and scalars (built by PyYAML's safe constructor);
mappings and lists are subclasses that also carry the line of each key or item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cadenza.core.errors import SpecError


class LocDict(dict):
    """A dict that knows the (1-based) line of itself and of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class LocList(list):
    """A list that knows the line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


def load_yaml(text: str, filename: str = "<string>") -> Any:
    """Parse ``text`` with the safe loader; a syntax error or duplicate key raises SpecError."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        return _convert(loader, node, filename)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        hint = ""
        if "expected ',' or ']'" in str(exc.problem):
            hint = ' (inside [...] quote stream ranges: reads: ["acoustic[0:2]"])'
        raise SpecError([f"{filename}:{line}: invalid YAML: {exc.problem or exc}{hint}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"{filename}:1: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{path}:1: cannot read spec: {exc.strerror if isinstance(exc, OSError) else exc}"]) from None
    return load_yaml(text, str(path))


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _convert(loader: yaml.SafeLoader, node: yaml.Node, filename: str) -> Any:
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        line = node.start_mark.line + 1
        raise SpecError([f"{filename}:{line}: invalid YAML: unsupported tag {node.tag!r} (specs hold plain data only)"])
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<)
        out = LocDict()
        out.line, out.key_lines = node.start_mark.line + 1, {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in out:
                raise SpecError([f"{filename}:{line}: duplicate key {key!r} (first on line {out.key_lines[key]})"])
            out[key] = _convert(loader, value_node, filename)
            out.key_lines[key] = line
        return out
    if isinstance(node, yaml.SequenceNode):
        items = LocList(_convert(loader, item, filename) for item in node.value)
        items.line, items.item_lines = node.start_mark.line + 1, [i.start_mark.line + 1 for i in node.value]
        return items
    return loader.construct_object(node, deep=True)


def line_of(tree: Any, path: tuple[Any, ...]) -> int:
    """Line of the deepest element of ``path`` that exists in ``tree`` (1 when none does)."""
    line = getattr(tree, "line", 1) or 1
    node = tree
    for key in path:
        if isinstance(node, LocDict) and key in node:
            line, node = node.key_lines[key], node[key]
        elif isinstance(node, LocList) and isinstance(key, int) and 0 <= key < len(node):
            line, node = node.item_lines[key], node[key]
        else:
            break
    return line
