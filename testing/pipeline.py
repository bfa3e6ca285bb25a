"""Tiny random-weight pipelines around the component under test.

:func:`tiny_spec` writes the spec as plain data: built-in tiny components everywhere, except
the ones a test swaps in by name. :class:`TinyPipeline` validates it, builds its cascade or
generates a fraction of a second with it, against a given registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from cadenza.core.spec.validate import check_tree

Component = str | dict[str, Any] | None

TOKENIZER = {"name": "tiny-codec", "params": {"num_codebooks": 2, "codebook_size": 64, "channels": 8, "latent_dim": 16}}
CONDITIONER = {"name": "byte-text", "params": {"dim": 16, "output": "pooled"}}
SEMANTIC = {"name": "mel-kmeans", "params": {"frame_rate": 25, "vocab_size": 32}}
STAGE_MODEL = {"name": "transformer", "params": {"d_model": 32, "layers": 1, "heads": 2}}
SAMPLER = {"name": "top-k", "params": {"k": 8}}
LAYOUTS = ("acoustic", "musiclm")
# The built-in plugins the defaults above come from (steering: a melody, hold or beat in a test run).
BUILTINS = ("tiny", "transformer", "samplers", "steering")
_DEFAULT: Any = object()


def _component(value: Component, default: dict[str, Any]) -> dict[str, Any]:
    if value is None:
        return dict(default)
    return {"name": value} if isinstance(value, str) else dict(value)


def tiny_spec(*, tokenizer: Component = None, conditioner: Component = _DEFAULT, stage_model: Component = None,
              sampler: Component = None, semantic_tokenizer: Component = None, layout: str = "acoustic",
              guidance_scale: float = 1.0, seconds: float = 0.3) -> dict[str, Any]:
    """A tiny spec as a mapping. Each component is a name, a ``{name, params, weights}``
    mapping, or left out for the built-in tiny default; ``conditioner=None`` means none.

    ``layout="acoustic"``: one MusicGen-style stage writing every codebook (any tokenizer).
    ``layout="musiclm"``: semantic, coarse (``acoustic[0:1]``) and fine (``acoustic[1:]``)
    stages; needs a tokenizer with at least two codebooks.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    cond = None if conditioner is None else _component(None if conditioner is _DEFAULT else conditioner, CONDITIONER)
    model = _component(stage_model, STAGE_MODEL)
    stage = {"model": model["name"], "params": model.get("params", {}), "sampler": _component(sampler, SAMPLER)}
    if "weights" in model:
        stage["weights"] = model["weights"]
    guided = {"guidance_scale": guidance_scale} if cond else {}
    spec: dict[str, Any] = {"name": "tiny-test", "tokenizer": _component(tokenizer, TOKENIZER)}
    if cond:
        spec["conditioner"] = cond
    if layout == "acoustic":
        spec["stages"] = [{"name": "acoustic", "role": "acoustic", "writes": "acoustic", **stage, **guided}]
    else:
        spec["semantic_tokenizer"] = _component(semantic_tokenizer, SEMANTIC)
        spec["stages"] = [
            {"name": "semantic", "role": "semantic", "writes": "semantic", **stage, **guided},
            {"name": "coarse", "role": "coarse", "reads": ["semantic"], "writes": "acoustic[0:1]", **stage, **guided},
            {"name": "fine", "role": "fine", "reads": ["acoustic[0:1]"], "writes": "acoustic[1:]", "conditioning": "none", **stage},
        ]
    spec["output"] = {"seconds": seconds}
    return spec


@attrs.define
class TinyPipeline:
    """A spec mapping plus the registry to check and build it with."""

    spec: dict[str, Any]
    registry: Any

    def yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.spec, sort_keys=False)

    def write(self, path: str | Path) -> Path:
        """Write the spec as YAML (for ``cadenza validate PATH`` and friends); returns the path."""
        path = Path(path)
        path.write_text(self.yaml())
        return path

    def validate(self) -> Any:
        """The checked :class:`~cadenza.core.spec.validate.ResolvedPipeline`; SpecError lists problems."""
        return check_tree(self.spec, self.registry)

    def cascade(self, device: str = "cpu") -> Any:
        from cadenza.core.engine.cascade import Cascade

        return Cascade.from_spec(self.spec, registry=self.registry, device=device)

    def generate(self, prompt: str = "a short test tune", seconds: float | None = None, seed: int = 0) -> Any:
        """Build the cascade and generate; returns its :class:`~cadenza.core.engine.cascade.Generation`."""
        return self.cascade().generate(prompt, seconds=seconds, seed=seed)
