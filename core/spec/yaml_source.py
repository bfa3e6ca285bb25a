"""Safe, bounded YAML loading that remembers line numbers, so every spec problem can say FILE:LINE.

Values come back as plain dicts, lists and scalars (built by PyYAML's safe constructor);
mappings and lists are subclasses that also carry the line of each key or item.

A spec is a page of text, so what a hostile one can cost is bounded before it is paid: the
file's size and type (:mod:`cadenza.core.files.user_text`), the nesting depth while it is
composed (PyYAML recurses, so a 10,000-deep list would otherwise end in RecursionError), and
the number of values once aliases are expanded (a "billion laughs" file is a few hundred bytes
that anchors and aliases fan out into 10^9 values). Each limit broken is one ``FILE:LINE``
problem naming the limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import yaml

from cadenza.core.errors import InputError, SpecError
from cadenza.core.files.user_text import MiB, read_user_text


@attrs.frozen
class YamlLimits:
    """What one YAML document may hold; the defaults are far beyond any real spec or matrix."""

    max_bytes: int = 1 * MiB
    max_depth: int = 64
    max_values: int = 100_000  # scalars, lists and mappings, counted after aliases are expanded


DEFAULT_LIMITS = YamlLimits()


class LocDict(dict):
    """A dict that knows the (1-based) line of itself and of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class LocList(list):
    """A list that knows the line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


class _LimitBroken(Exception):
    def __init__(self, line: int, message: str):
        self.line, self.message = line, message


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a depth limit applied while nodes are composed."""

    def __init__(self, text: str, limits: YamlLimits):
        super().__init__(text)
        self.limits, self.depth = limits, 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            mark = self.peek_event().start_mark
            raise _LimitBroken(mark.line + 1, f"nested deeper than {self.limits.max_depth} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(text: str, filename: str = "<string>", limits: YamlLimits = DEFAULT_LIMITS) -> Any:
    """Parse ``text`` with the bounded safe loader; any problem raises SpecError (``FILE:LINE: ...``)."""
    loader = None
    try:
        loader = _BoundedLoader(text, limits)  # checks every character first (ReaderError)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, limits)
        return _convert(loader, node, filename)
    except _LimitBroken as exc:
        raise SpecError([f"{filename}:{exc.line}: invalid YAML: {exc.message}"]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        hint = ""
        if "expected ',' or ']'" in str(exc.problem):
            hint = ' (inside [...] quote stream ranges: reads: ["acoustic[0:2]"])'
        raise SpecError([f"{filename}:{line}: invalid YAML: {exc.problem or exc}{hint}"]) from None
    except yaml.reader.ReaderError as exc:  # a control character such as NUL
        line = text.count("\n", 0, exc.position) + 1
        raise SpecError([f"{filename}:{line}: invalid YAML: control character U+{exc.character:04X} "
                         "(a spec is plain text)"]) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"{filename}:1: invalid YAML: {exc}"]) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(path: str | Path, limits: YamlLimits = DEFAULT_LIMITS, what: str = "spec") -> Any:
    """Read (bounded: regular files of at most ``limits.max_bytes``) and parse a YAML file."""
    try:
        text = read_user_text(path, what, limits.max_bytes)
    except InputError as exc:
        message = str(exc)
        located = message if message.startswith(f"{path}:") and message[len(str(path)) + 1:][:1].isdigit() \
            else message.replace(f"{path}: ", f"{path}:1: ", 1)
        raise SpecError([located]) from None
    return load_yaml(text, str(path), limits)


def _check_expanded_size(root: yaml.Node, limits: YamlLimits) -> None:
    """Count the values ``root`` stands for with every alias expanded, without expanding them.

    An alias is the same node object as its anchor, so sizes are memoised per node: a chain
    of anchors that doubles at each level costs one visit per anchor, not 2^levels. A node
    that contains itself (``&a [*a]``) is refused, as is expansion deeper than the depth limit.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        line = node.start_mark.line + 1
        if key in open_nodes:
            raise _LimitBroken(line, "an alias refers to a node that contains it (a recursive structure)")
        if depth > limits.max_depth:
            raise _LimitBroken(line, f"aliases expand deeper than {limits.max_depth} levels")
        total = 1
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            open_nodes.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            for child in children:
                total += size(child, depth + 1)
                if total > limits.max_values:
                    raise _LimitBroken(line, f"more than {limits.max_values:,} values once aliases are "
                                             "expanded (an alias bomb, or far more than a spec holds)")
            open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root, 1)


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _convert(loader: yaml.SafeLoader, node: yaml.Node, filename: str) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise SpecError([f"{filename}:{line}: invalid YAML: unsupported tag {node.tag!r} (specs hold plain data only)"])
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<)
        out = LocDict()
        out.line, out.key_lines = line, {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError([f"{filename}:{key_line}: invalid YAML: a key must be a plain value, "
                                 f"not a {'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'}"])
            key = _scalar(loader, key_node, filename)
            if key in out:
                raise SpecError([f"{filename}:{key_line}: duplicate key {key!r} (first on line {out.key_lines[key]})"])
            out[key] = _convert(loader, value_node, filename)
            out.key_lines[key] = key_line
        return out
    if isinstance(node, yaml.SequenceNode):
        items = LocList(_convert(loader, item, filename) for item in node.value)
        items.line, items.item_lines = line, [i.start_mark.line + 1 for i in node.value]
        return items
    return _scalar(loader, node, filename)


def _scalar(loader: yaml.SafeLoader, node: yaml.Node, filename: str) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except ValueError as exc:  # an integer of more digits than Python converts, a bad date
        reason = str(exc).split(";")[0]
        raise SpecError([f"{filename}:{node.start_mark.line + 1}: invalid YAML: {reason}"]) from None


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
