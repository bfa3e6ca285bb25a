"""Component parameters: a spec's ``params:`` mapping <-> the component's attrs config class.

Strict on purpose: an unknown key names the allowed ones, ``"3"`` is not an int and
``"false"`` is not a bool. Problems come back as ``(key path, message)`` pairs so the spec
validator can point at the YAML line of each.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from cadenza.core.errors import CadenzaError

KeyPath = tuple[Any, ...]
MAX_INT = 2 ** 63 - 1  # what a torch int64 (a seed, a size) can hold


class ParamsError(CadenzaError):
    """Parameters that do not fit a config class; ``problems`` is a list of (path, message)."""

    def __init__(self, problems: list[tuple[KeyPath, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p)) or 'params'}: {m}" for p, m in problems))


def _strict(kind: type, accepts: tuple[type, ...]) -> Any:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, accepts):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
        if kind is float and not math.isfinite(value):  # NaN passes every "<" check after it
            raise ValueError(f"expected a finite number, got {value!r}")
        if kind is int and not -MAX_INT <= value <= MAX_INT:
            raise ValueError(f"expected an integer of at most 64 bits, got {value:.3g}")
        return kind(value)

    return hook


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(int, _strict(int, (int,)))
    conv.register_structure_hook(float, _strict(float, (int, float)))
    conv.register_structure_hook(bool, _strict(bool, (bool,)))
    conv.register_structure_hook(str, _strict(str, (str,)))
    return conv


converter = _make_converter()


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def allowed_keys(cls: type) -> list[str]:
    return [f.name for f in attrs.fields(cls) if f.init] if attrs.has(cls) else []


def structure_config(cls: type, params: Mapping[str, Any] | None) -> Any:
    """Build ``cls`` from ``params`` or raise :class:`ParamsError` listing every problem.

    Every problem at once: unknown keys, the known keys' types, and every field's validator (not
    only the first that fails). A validator is not believed where it reads a field with a problem
    of its own, so a misspelled key or a wrong type is reported once, not again by what rests on it.
    """
    params = dict(params or {})
    if not attrs.has(cls):
        raise TypeError(f"{cls!r} is not an attrs class")
    allowed = allowed_keys(cls)
    problems: list[tuple[KeyPath, str]] = []
    meant: set[str] = set()  # fields that an unknown key may have been meant to set
    for key in params:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listing = ", ".join(allowed) if allowed else "none: this component takes no params"
            problems.append(((key,), f"unknown key {key!r}{hint}; allowed: {listing}"))
            meant.update(close)
    known = {key: value for key, value in params.items() if key in allowed}
    hints = typing.get_type_hints(cls)
    try:
        config = converter.structure(known, cls)
    except cattrs.ClassValidationError as group:
        leaves = list(_leaves(group))
        if all(name is None for _, name in leaves):  # every field structured: __init__ (validators) refused
            raise ParamsError(problems + _validator_problems(cls, known, hints, meant, leaves[0][0])) from None
        wrong = {name for _, name in leaves}
        for exc, name in leaves:
            if isinstance(exc, KeyError):
                if name not in meant:
                    problems.append(((name,), f"missing required key {name!r}"))
                continue
            message = str(exc) or type(exc).__name__
            if name in hints and "expected" not in message and not isinstance(exc, ValueError):
                message = f"invalid value {known.get(name)!r}: expected {_type_name(hints[name])}"
            problems.append(((name,) if name else _key_in_message(message, allowed), message))
        right = {key: value for key, value in known.items() if key not in wrong}
        raise ParamsError(problems + _validator_problems(cls, right, hints, meant | wrong)) from None
    except (TypeError, ValueError) as exc:  # attrs validators run in __init__ (cattrs versions that do not wrap them)
        raise ParamsError(problems + _validator_problems(cls, known, hints, meant, exc)) from None
    if problems:
        raise ParamsError(problems)
    return config


class _Reads:
    """Stands in for a config instance while one validator runs, noting which fields it reads."""

    def __init__(self, values: dict[str, Any]):
        self._reads_values: dict[str, Any] = values
        self._reads_seen: set[str] = set()

    def __getattr__(self, name: str) -> Any:  # only called for names that are not the two above
        self._reads_seen.add(name)  # a field without a value (a required key missing) is read too
        if name not in self._reads_values:
            raise AttributeError(name)
        return self._reads_values[name]


def _validator_problems(cls: type, known: dict[str, Any], hints: dict[str, Any], unsure: set[str],
                        first: BaseException | None = None) -> list[tuple[KeyPath, str]]:
    """What every field's validator says of ``known`` (structured; defaults elsewhere).

    A validator that reads another field (heads dividing d_model) is not believed when that field
    is itself refused, or is in ``unsure`` (left at its default because its key was misspelled or
    its value of the wrong type): that is the other field's problem, reported once. Where no
    validator refuses, ``first`` (what __init__ raised: a post-init check) is the problem, unless
    something is unsure.
    """
    fallback = [] if first is None else [(_key_in_message(str(first), allowed_keys(cls)), str(first) or type(first).__name__)]
    values: dict[str, Any] = {}
    try:
        for field in attrs.fields(cls):
            if field.name in known:
                values[field.name] = converter.structure(known[field.name], hints[field.name])
            elif isinstance(field.default, attrs.Factory):
                values[field.name] = (field.default.factory(_Reads(values)) if field.default.takes_self
                                      else field.default.factory())
            elif field.default is not attrs.NOTHING:
                values[field.name] = field.default
    except Exception:  # a field cattrs structures in a way of its own: what __init__ said is all there is
        return fallback
    refused: dict[str, tuple[str, set[str]]] = {}
    for field in attrs.fields(cls):
        if field.validator is None or field.name not in values:
            continue
        reader = _Reads(values)
        try:
            field.validator(reader, field, values[field.name])
        except Exception as exc:  # a validator's complaint, whatever its type (``x % 0`` included)
            refused[field.name] = (str(exc) or type(exc).__name__, reader._reads_seen - {field.name})
    if not refused:  # a post-init check refused, reading who knows what: not believed beside misspelled keys
        return [] if unsure else fallback
    doubtful = {name for name, (_, reads) in refused.items() if name in unsure or reads & unsure}
    believed = [((name,), message) for name, (message, reads) in refused.items()
                if name not in doubtful and not reads & set(refused)]
    # none believed: they rest on each other (all are reported) or on misspelled keys (none is)
    return believed or [((name,), message) for name, (message, _) in refused.items() if name not in doubtful]


def _leaves(group: BaseException, name: str | None = None):
    """Yield (leaf exception, name of the config field it concerns) from a cattrs error group."""
    for note in getattr(group, "__notes__", []):
        name = getattr(note, "name", None) or name
    if isinstance(group, BaseExceptionGroup) and not isinstance(group, cattrs.ClassValidationError) or (
        isinstance(group, cattrs.ClassValidationError) and name is None
    ):
        for exc in group.exceptions:
            yield from _leaves(exc, name)
    else:
        yield group, name


def _key_in_message(message: str, allowed: list[str]) -> KeyPath:
    for key in allowed:
        if f"'{key}'" in message or message.startswith(f"{key} "):
            return (key,)
    return ()


def unstructure_config(config: Any) -> dict[str, Any]:
    """The plain-data form of a config (what a spec's params or a checkpoint's config hold)."""
    return converter.unstructure(config)


def saved_config(config: Any, saved: dict[str, Any]) -> Any:
    """A checkpoint's saved config, with the ``USAGE_FIELDS`` of the spec's ``config`` (see
    :func:`config_for_weights`)."""
    spec = unstructure_config(config)
    usage = {name: spec[name] for name in getattr(type(config), "USAGE_FIELDS", ())}
    return structure_config(type(config), {**saved, **usage})


def config_for_weights(config: Any, weights: Any) -> Any:
    """The architecture to build: a local checkpoint's saved config, else the spec's ``config``.

    Local weights carry their own ``config.json`` (``{"component": ..., "config": {...}}``);
    its ``config`` is authoritative, because the tensors were trained for exactly that shape.
    Fields a config class lists in ``USAGE_FIELDS`` say how the model is *used*, not what
    shape it has (MuLan's ``output``: ids or a vector from the same tensors): those always come
    from the spec, so one checkpoint serves either use.
    """
    saved = weights.read_config()
    if saved is None:
        return config
    try:
        return saved_config(config, saved.get("config", {}))
    except ParamsError as exc:
        raise ParamsError([((), f"config.json of weights {weights.source!r}: {exc}")]) from None
