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
    """Build ``cls`` from ``params`` or raise :class:`ParamsError` listing every problem."""
    params = dict(params or {})
    if not attrs.has(cls):
        raise TypeError(f"{cls!r} is not an attrs class")
    allowed = allowed_keys(cls)
    problems: list[tuple[KeyPath, str]] = []
    for key in params:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listing = ", ".join(allowed) if allowed else "none: this component takes no params"
            problems.append(((key,), f"unknown key {key!r}{hint}; allowed: {listing}"))
    if problems:
        raise ParamsError(problems)
    hints = typing.get_type_hints(cls)
    try:
        return converter.structure(params, cls)
    except cattrs.ClassValidationError as group:
        for exc, name in _leaves(group):
            name = name or (_key_in_message(str(exc), allowed) or (None,))[0]
            message = str(exc) or type(exc).__name__
            if name in hints and "expected" not in message and not isinstance(exc, ValueError):
                message = f"invalid value {params.get(name)!r}: expected {_type_name(hints[name])}"
            problems.append(((name,) if name else (), message))
        raise ParamsError(problems) from None
    except (TypeError, ValueError) as exc:  # attrs validators run in __init__
        raise ParamsError([(_key_in_message(str(exc), allowed), str(exc))]) from None


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
