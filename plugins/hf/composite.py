"""One part of a composite Hugging Face checkpoint, loaded without the rest.

A MusicGen checkpoint (``facebook/musicgen-small`` ...) is one ``config.json`` with a sub-config
per part (``text_encoder``, ``audio_encoder``, ``decoder``) and one set of safetensors files
whose tensor names carry the part as a prefix (``decoder.model.layers.0...``,
``enc_to_dec_proj.weight``). Cadenza builds each part as its own component (the ``t5``
conditioner, the ``encodec`` tokenizer, the ``musicgen`` stage), so each reads only its own
tensors: loading the whole model three times would triple the memory of musicgen-large.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cadenza.core.errors import WeightsError

COMPOSITE_TYPES = ("musicgen", "musicgen_melody")


def composite_part_config(config: dict | None, part: str) -> dict | None:
    """The sub-config of ``part`` when ``config`` is a composite checkpoint's, else None."""
    if not isinstance(config, dict) or config.get("model_type") not in COMPOSITE_TYPES:
        return None
    sub = config.get(part)
    return sub if isinstance(sub, dict) else None


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WeightsError(f"{index}: unreadable shard index ({exc})") from None
        return [folder / name for name in names]
    single = folder / "model.safetensors"
    if single.exists():
        return [single]
    raise WeightsError(f"{folder}: no model.safetensors (only safetensors checkpoints are read: they cannot run code)")


def part_state(folder: Path, prefix: str) -> dict[str, Any]:
    """Every tensor named ``{prefix}.*`` in the folder's safetensors files, the prefix removed."""
    from safetensors import safe_open

    state: dict[str, Any] = {}
    for file in _weight_files(folder):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    if name.startswith(prefix + "."):
                        state[name[len(prefix) + 1:]] = handle.get_tensor(name)
        except (OSError, ValueError, RuntimeError) as exc:  # truncated or not safetensors
            raise WeightsError(f"{file}: unreadable safetensors ({exc})") from None
    return state


def load_part(folder: Path, prefix: str, module: Any, component: str) -> Any:
    """Load the ``{prefix}.*`` tensors into ``module`` (built from the part's sub-config).

    Every tensor the module has must be in the checkpoint, or be the same tensor as one that is
    (a T5 encoder's ``encoder.embed_tokens`` is ``shared``); a checkpoint tensor the module
    lacks means another architecture. Either is refused with one WeightsError naming the folder.
    """
    state = part_state(folder, prefix)
    if not state:
        raise WeightsError(f"{component}: {folder} holds no '{prefix}.*' tensors (not this kind of checkpoint?)")
    result = module.load_state_dict(state, strict=False)
    aliases: dict[int, set[str]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        aliases.setdefault(id(tensor), set()).add(name)
    loaded = set(state)
    by_name = {name: names for names in aliases.values() for name in names}
    missing = [k for k in result.missing_keys if not by_name.get(k, set()) & loaded]  # a tied alias was loaded
    if missing or result.unexpected_keys:
        what = f"missing {missing[:3]}" if missing else f"unexpected {result.unexpected_keys[:3]}"
        raise WeightsError(f"{component}: {folder}: '{prefix}' tensors do not fit the architecture in config.json "
                           f"({what})")
    return module


def build_part(folder: Path, part: str, build: Callable[[dict], Any], component: str, prefix: str | None = None) -> Any:
    """``build(sub_config)`` for ``part`` of the composite checkpoint in ``folder``, its tensors loaded."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{component}: {folder}/config.json: unreadable ({exc})") from None
    sub = composite_part_config(config, part)
    if sub is None:
        raise WeightsError(f"{component}: {folder} is not a MusicGen checkpoint (no '{part}' in its config.json)")
    return load_part(folder, prefix or part, build(sub), component)
