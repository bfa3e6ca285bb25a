"""Which Hugging Face checkpoints a pipeline needs, and fetching them into the local cache.

The ids are read from the spec without validating it: validation needs each checkpoint's
``config.json``, which is what this fetches. A component's ``weights:`` (or, when the spec
leaves it out, the default its plugin registered) names a hub repo when it parses as a hub id
with an owner (``facebook/musicgen-small``, ``google-t5/t5-base``); ids without one
(``pretrained``) are a plugin's own downloads and are fetched by the plugin when first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from cadenza.core.engine.weights import network_allowed, parse_weights
from cadenza.core.errors import CadenzaError, InputError, SpecError
from cadenza.core.spec.schema import ComponentSpec, parse_spec
from cadenza.core.spec.validate import resolve_source
from cadenza.core.spec.yaml_source import load_yaml_file


@attrs.frozen
class DownloadConfig:
    """What ``cadenza download`` was asked: a spec or preset, a revision, or only a listing."""

    pipeline: str
    revision: str | None = None
    list_only: bool = False
    quiet: bool = False


@attrs.frozen
class HubCheckpoint:
    """One hub repo and the components of the spec that read it."""

    repo_id: str
    users: tuple[str, ...]


def _references(spec: Any) -> list[tuple[str, str, ComponentSpec]]:
    """``(what, kind, component)`` for every component the spec names."""
    refs = []
    for slot, kind in (("conditioner", "conditioner"), ("semantic_tokenizer", "semantic_tokenizer"),
                       ("tokenizer", "tokenizer")):
        ref = getattr(spec, slot)
        if ref is not None:
            refs.append((slot, kind, ref))
    for stage in spec.stages:
        refs.append((f"stage {stage.name!r}", "stage_model", stage.model))
    return refs


def hub_checkpoints(source: str | Path, registry: Any) -> list[HubCheckpoint]:
    """The hub repos a spec or preset needs, in the order the spec names them."""
    path = resolve_source(source, registry)
    spec, problems = parse_spec(load_yaml_file(path), path)
    if spec is None:
        raise SpecError([f"{path}:1: {message}" for _, message in problems] or [f"{path}:1: not a pipeline spec"])
    found: dict[str, list[str]] = {}
    for what, kind, ref in _references(spec):
        value = ref.weights if ref.weights is not None else registry.get(kind, ref.name).default_weights
        try:
            weights = parse_weights(value, spec.base_dir)
        except CadenzaError:
            continue  # a bad weights value: `cadenza validate` names it; nothing to fetch here
        if weights.kind == "hub" and "/" in weights.source:
            found.setdefault(weights.source, []).append(f"{what} ({ref.name})")
    return [HubCheckpoint(repo, tuple(users)) for repo, users in found.items()]


def cached_folder(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached snapshot of ``repo_id`` (at ``revision``), or None when it is not complete here."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, or only partly
        return None


def fetch(repo_id: str, revision: str | None = None, quiet: bool = False) -> Path:
    """Download ``repo_id`` into the Hugging Face cache (resuming a partial download); one line on failure."""
    from huggingface_hub import snapshot_download

    if not network_allowed():
        raise InputError(f"{repo_id}: not in the Hugging Face cache and the machine is offline "
                         "(HF_HUB_OFFLINE/CADENZA_OFFLINE is set): run `cadenza download` where there is a network")
    try:
        if quiet:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        return Path(snapshot_download(repo_id, revision=revision))
    except Exception as exc:  # noqa: BLE001 - no network, no such repo, a gated repo: one line each
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{repo_id}: download failed ({type(exc).__name__}: {reason[:200]})") from None
