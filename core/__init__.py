"""Cadenza's contract and engine: what a plugin implements, and what runs a cascade.

The public API is importable from here::

    from cadenza.core import hookimpl, Cascade, Tokenizer, InputError

Contract names (hook markers, component protocols, data types, errors) import no torch.
``Cascade`` and ``Generation`` belong to the engine, which needs torch: they are loaded on first
use (PEP 562 ``__getattr__``), so ``import cadenza.core`` stays as cheap as listing plugins.

Folders: ``spec/`` (YAML with line numbers, the spec model, validation, params), ``engine/``
(the cascade, the decode loop, long-form windows, weights and checkpoints, reranking),
``steering/`` (melody, beat grid, piece memory, logit bias, the options that build a steering list), ``audio/`` (I/O, the shared DSP,
spectrogram plots), ``files/`` (atomic writes, JSON lines), ``quantize/`` (k-means, centroid
tokenizers), ``cli/`` (the ``cadenza`` command). See docs/design.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cadenza.core.components import (BuildContext, ComponentEntry, Conditioner, MelodySource, Metric, NoConfig,
                                     Sampler, SemanticTokenizer, StageModel, StageRequest, Steering, SteeringRun,
                                     SteeringWindow, Tokenizer, Watermark)
from cadenza.core.errors import CadenzaError, InputError, RegistryError, SpecError, WeightsError
from cadenza.core.hookspecs import hookimpl, hookspec
from cadenza.core.layout import StageLayout
from cadenza.core.types import Conditioning, ConditioningInfo, SemanticInfo, TokenizerInfo

if TYPE_CHECKING:
    from cadenza.core.engine.cascade import Cascade, Generation

_ENGINE = {"Cascade": "cadenza.core.engine.cascade", "Generation": "cadenza.core.engine.cascade"}

__all__ = [
    "BuildContext", "CadenzaError", "Cascade", "ComponentEntry", "Conditioner", "Conditioning", "ConditioningInfo",
    "Generation", "InputError", "MelodySource", "Metric", "NoConfig", "RegistryError", "Sampler", "SemanticInfo",
    "SemanticTokenizer", "SpecError", "StageLayout", "StageModel", "StageRequest", "Steering", "SteeringRun",
    "SteeringWindow", "Tokenizer", "TokenizerInfo", "Watermark", "WeightsError", "hookimpl", "hookspec",
]


def __getattr__(name: str) -> Any:
    """Engine classes, imported when first asked for (they bring torch)."""
    if name in _ENGINE:
        return getattr(importlib.import_module(_ENGINE[name]), name)
    raise AttributeError(f"module 'cadenza.core' has no attribute {name!r}")
