"""The ``transformer`` stage model: registration, parameters and pre-build checks.

This module is imported at plugin discovery, so it must stay cheap: no torch here. The model
itself lives in :mod:`cadenza.plugins.transformer.model` and is imported only when a spec
builds a stage with it.
"""

from __future__ import annotations

from typing import Any

import attrs

from cadenza.core.errors import WeightsError
from cadenza.core.hookspecs import hookimpl
from cadenza.core.layout import StageLayout
from cadenza.core.spec.validators import memory_problem


def _number(kind: type, low: float, *, low_inclusive: bool = False, high: float | None = None) -> Any:
    """An attrs validator: ``value`` is a ``kind`` above ``low`` (and below ``high``).

    The message starts with the field name so the spec validator can point at its YAML line.
    """

    def check(instance: Any, attribute: Any, value: Any) -> None:
        kinds = (int, float) if kind is float else (kind,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"{attribute.name} must be a {kind.__name__}, got {value!r}")
        if value < low or (value == low and not low_inclusive):
            bound = ">=" if low_inclusive else ">"
            raise ValueError(f"{attribute.name} must be {bound} {low}, got {value!r}")
        if high is not None and value > high:
            raise ValueError(f"{attribute.name} must be <= {high}, got {value!r}")

    return check


def _heads_fit(instance: "TransformerConfig", attribute: Any, value: int) -> None:
    """Attention splits d_model across heads, and RoPE rotates pairs within a head."""
    if value % instance.heads:
        raise ValueError(f"d_model {value} is not divisible by heads {instance.heads}")
    if (value // instance.heads) % 2:
        raise ValueError(f"d_model {value} / heads {instance.heads} gives an odd head dim; RoPE needs an even one")


@attrs.frozen
class TransformerConfig:
    """Parameters of the decoder-only stage transformer (a spec's ``params:``).

    Vocabulary sizes, codebook counts and conditioning width are *not* here: they come from
    the stage layout, so swapping the codec or conditioner resizes the model consistently.
    """

    d_model: int = attrs.field(default=256, validator=[_number(int, 0), _heads_fit])
    layers: int = attrs.field(default=4, validator=_number(int, 0))
    heads: int = attrs.field(default=4, validator=_number(int, 0))
    ff_mult: int = attrs.field(default=4, validator=_number(int, 0))
    dropout: float = attrs.field(default=0.0, validator=_number(float, 0.0, low_inclusive=True, high=1.0))
    # Number of prefix tokens a pooled conditioning vector is projected to (prefix mode).
    prefix_length: int = attrs.field(default=4, validator=_number(int, 0))
    # Probability that a training row uses the learned null condition (classifier-free guidance).
    cond_dropout: float = attrs.field(default=0.1, validator=_number(float, 0.0, low_inclusive=True, high=1.0))
    rope_base: float = attrs.field(default=10000.0, validator=_number(float, 0.0))
    # Also add each read frame's embedding to the written tokens of the same time (the reads
    # stay in the prefix too): a coarse stage then sees "this semantic frame, now" at every step
    # instead of having to learn, by attention alone, which of the reads is the current one.
    aligned_reads: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    seed: int = attrs.field(default=0, validator=_number(int, 0, low_inclusive=True))

    def parameter_estimate(self, layout: StageLayout) -> float:
        """Weights the model will have, within a few percent: attention and feed-forward per
        layer, embeddings and output heads per codebook read or written."""
        width = self.d_model
        rows = sum(s.num_codebooks * (s.codebook_size + 1) for s in (*layout.reads, layout.writes))
        return float(self.layers) * (4 + 2 * self.ff_mult) * width * width + 2.0 * rows * width

    def check(self, layout: StageLayout, weights: Any) -> list[str]:
        """Problems found without building the model: unsupported conditioning, or a local
        checkpoint saved for another stage layout (e.g. trained with a different codec)."""
        problems = []
        too_big = memory_problem(self.parameter_estimate(layout), f"a transformer of d_model {self.d_model:,} "
                                 f"and {self.layers:,} layers")
        if too_big:
            return [too_big]
        cond, mode = layout.conditioning, layout.conditioning_mode
        if mode != "none" and cond is None:
            problems.append(f"conditioning_mode {mode!r} needs a conditioner, but the stage has none")
        if cond is not None and mode == "prefix" and cond.kind == "sequence":
            problems.append(
                "conditioning kind 'sequence' with mode 'prefix' is not supported by transformer: use mode 'cross'"
            )
        if cond is not None and mode != "none":
            if cond.kind == "tokens" and cond.vocab_size <= 0:
                problems.append("conditioning kind 'tokens' needs a vocab_size > 0")
            if cond.kind in ("pooled", "sequence") and cond.dim <= 0:
                problems.append(f"conditioning kind {cond.kind!r} needs a dim > 0")
        if weights is not None and getattr(weights, "kind", None) == "path":
            try:
                saved = weights.read_config()
            except WeightsError as exc:
                return problems + [str(exc)]
            if saved and saved.get("layout"):
                try:
                    trained = StageLayout.from_dict(saved["layout"])
                except (KeyError, TypeError, ValueError) as exc:
                    return problems + [f"weights {weights.source!r}: unreadable saved layout ({exc})"]
                problems += [f"weights {weights.source!r}: {d}" for d in layout.differences(trained)]
        return problems


@hookimpl
def register_stage_models(register: Any) -> None:
    register(
        "transformer",
        "cadenza.plugins.transformer.model:build_transformer",
        config=TransformerConfig,
        description="decoder-only transformer (RoPE, KV cache, prefix or cross-attention conditioning)",
    )
