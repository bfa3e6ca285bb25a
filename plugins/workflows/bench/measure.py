"""Measure one benchmark combination: build it, generate, time and weigh it, score it.

Runs inside a worker process of its own (see :mod:`cadenza.plugins.workflows.bench.run`), so the peak
resident memory it reports belongs to this combination alone. :func:`measure` never raises
for a failing combination: the error becomes the row, and the run goes on with the next.

Metrics are metric plugins and decide which inputs they use. Every per-clip metric is first
given the *generated* clips (inputs ``prompt``, ``attributes``, ``conditioner``); one that
raises InputError there (a fidelity metric needs ``reference``) is given the *codec* clips
instead: the reference recordings encoded and decoded by the combination's tokenizer, with
the original as ``reference``. Codec values are recorded as ``codec.NAME``. A metric that
cannot score either way is recorded as n/a with its reason, not as a failure; so is a metric
whose own model cannot be loaded (its CadenzaError), since the speed figures still stand.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from cadenza.plugins.workflows.bench.matrix import relative_paths
from cadenza.core.errors import CadenzaError, InputError
from cadenza.core.spec.validate import check_tree
from cadenza.registry import get_registry
from cadenza.core.components import BuildContext
from cadenza.core.spec.params import structure_config
from cadenza.core.audio.io import load_audio
from cadenza.core.audio.io import prepare
from cadenza.core.audio.io import resample

WARMUP_SECONDS = 0.5  # the untimed first generation: long enough to touch every stage and the decoder


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def parameter_count(component: Any) -> int | None:
    """Parameters of a built component (torch modules); None when it has none to count."""
    parameters = getattr(component, "parameters", None)
    if not callable(parameters):
        return None
    seen: dict[int, int] = {}
    for p in parameters():
        seen[id(p)] = p.numel()
    return sum(seen.values())


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """The result row of one combination (``status`` ok or failed); see docs/bench.md for the fields."""
    row: dict[str, Any] = {"id": job["id"], "label": job["label"], "overrides": job["overrides"],
                           "spec_hash": job["spec_hash"], "settings": job["fingerprint"], "status": "failed",
                           "host": os.uname().nodename, "pid": os.getpid(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        row.update(_measure(job))
        row["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure of a combination is its result
        row["error"] = relative_paths(f"{type(exc).__name__}: {exc}".strip())
        if os.environ.get("CADENZA_DEBUG"):
            row["traceback"] = traceback.format_exc()
    row["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return row


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from cadenza.core.engine.cascade import Cascade

    settings, device = job["settings"], job["device"]
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    registry = get_registry()
    metrics = _build_metrics(settings["metrics"], registry, device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    rss_start = peak_rss_mb()

    start = time.perf_counter()
    pipeline = check_tree(job["tree"], registry, Path(job["base"]))
    cascade = Cascade(pipeline, registry, device)
    load_s = time.perf_counter() - start
    random = cascade.random_components()
    out: dict[str, Any] = {"device": device, "threads": torch.get_num_threads(), "load_s": load_s,
                           "components": _components(pipeline, random), "random_weights": random,
                           "parameters": _parameters(cascade)}
    out["parameters_total"] = sum(v for v in out["parameters"].values() if v)

    seconds = float(settings["seconds"] or pipeline.spec.output.seconds)
    prompts = settings["prompts"]
    if settings["warmup"]:  # one-off costs (allocator, kernels, lazy builds) stay out of the timings
        cascade.generate([prompts[0]["text"]], seconds=min(seconds, WARMUP_SECONDS), seed=0)
    clips, speed = _generate(cascade, prompts, settings, seconds)
    out.update(seconds=seconds, clips=len(clips), **speed)
    out["peak_rss_mb"] = peak_rss_mb()
    out["rss_start_mb"] = rss_start
    if cuda:
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20

    references = [_load_reference(path, seconds) for path in settings["references"]]
    codec_clips, codec_speed = _codec_round_trip(cascade, prompts, references, settings["references"])
    out.update(codec_speed)
    values, notes = _score(metrics, clips, codec_clips, references, cascade)
    out["metrics"] = values
    out["metric_notes"] = {k: relative_paths(v) for k, v in notes.items()}
    return out


def _build_metrics(specs: list[dict[str, Any]], registry: Any, device: str) -> list[tuple[dict, Any]]:
    """(spec, built metric) pairs; a metric that cannot be built (missing weights) is kept as its error."""
    built = []
    for spec in specs:
        entry = registry.get("metric", spec["name"])
        try:
            built.append((spec, entry.build(structure_config(entry.config, spec["params"]), BuildContext(device=device))))
        except CadenzaError as exc:
            built.append((spec, exc))
    return built


def _components(pipeline: Any, random: list[str]) -> dict[str, str]:
    """slot -> component name, ``@random`` where its weights are random (``random``: the
    cascade's untrained slots, so a component that needs no weights is not marked)."""
    return {c.slot: c.entry.name + ("@random" if c.slot in random else "") for c in pipeline.components()}


def _parameters(cascade: Any) -> dict[str, int | None]:
    out = {"tokenizer": parameter_count(cascade.tokenizer)}
    if cascade.conditioner is not None:
        out["conditioner"] = parameter_count(cascade.conditioner)
    for name, model in cascade.models.items():
        out[f"stages.{name}"] = parameter_count(model)
    return out


def _batches(items: list, size: int | None) -> list[list]:
    size = size or len(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


def _generate(cascade: Any, prompts: list[dict], settings: dict, seconds: float) -> tuple[list, dict[str, Any]]:
    """Generate every prompt with every seed; clips as (prompt, audio [C, S]) and the speed figures."""
    stage_s: dict[str, float] = {}
    tokens: dict[str, int] = {}
    wall = 0.0
    clips = []
    for seed in settings["seeds"]:
        for batch in _batches(prompts, settings["batch_size"]):
            start = time.perf_counter()
            result = cascade.generate([p["text"] for p in batch], seconds=seconds, seed=seed)
            wall += time.perf_counter() - start
            for name, value in result.stage_seconds.items():
                stage_s[name] = stage_s.get(name, 0.0) + value
            for stage in cascade.pipeline.stages:
                writes, stream = stage.layout.writes, result.tokens[stage.layout.writes.stream]
                tokens[stage.spec.name] = tokens.get(stage.spec.name, 0) + (
                    stream.shape[0] * writes.num_codebooks * stream.shape[2])
            clips += [(prompt, audio) for prompt, audio in zip(batch, result.audio)]
    audio_s = len(clips) * seconds
    stage_names = [s.spec.name for s in cascade.pipeline.stages]
    stage_total = sum(stage_s.get(n, 0.0) for n in stage_names)
    return clips, {
        "stages": stage_names + [k for k in stage_s if k not in stage_names],  # run order, then "decode"
        "sample_rate": cascade.sample_rate, "audio_s": audio_s, "wall_s": wall, "rtf": wall / audio_s,
        "stage_s": stage_s, "stage_rtf": {k: v / audio_s for k, v in stage_s.items()},
        "tokens": tokens, "tokens_per_s": {n: tokens[n] / stage_s[n] for n in stage_names if stage_s.get(n)},
        "tokens_per_s_total": sum(tokens.values()) / stage_total if stage_total else None,
    }


def _load_reference(path: str, seconds: float) -> tuple[Any, int]:
    """A reference recording ``[C, S]`` at its own rate, cut to the generated length."""
    audio, rate = load_audio(path)
    return audio[:, : round(seconds * rate)], rate


def _codec_round_trip(cascade: Any, prompts: list[dict], references: list, paths: list[str]) -> tuple[list, dict]:
    """Each reference encoded and decoded by the tokenizer: (inputs, reconstruction [C, S]) pairs."""
    import torch

    if not references:
        return [], {}
    info = cascade.pipeline.tokenizer.info
    by_audio = {p.get("audio"): p for p in prompts if p.get("audio")}
    pairs, encode_s, decode_s, seconds = [], 0.0, 0.0, 0.0
    with torch.inference_mode():
        for (audio, rate), path in zip(references, paths):
            original = prepare(audio[None], rate, info.sample_rate, info.channels)
            start = time.perf_counter()
            codes = cascade.tokenizer.encode(original.to(cascade.device))
            encode_s += time.perf_counter() - start
            start = time.perf_counter()
            decoded = cascade.tokenizer.decode(codes).float().cpu()
            decode_s += time.perf_counter() - start
            seconds += original.shape[-1] / info.sample_rate
            prompt = by_audio.get(path, {})
            pairs.append(({"reference": original[0], "prompt": prompt.get("text"),
                           "attributes": prompt.get("attributes")}, decoded[0, :, : original.shape[-1]]))
    return pairs, {"codec_encode_rtf": encode_s / seconds, "codec_decode_rtf": decode_s / seconds,
                   "codec_audio_s": seconds}


def _score(metrics: list, clips: list, codec_clips: list, references: list, cascade: Any) -> tuple[dict, dict]:
    """Mean of every numeric metric value over the clips; notes say why a metric is n/a."""
    rate = cascade.sample_rate
    generated = [({"prompt": p["text"], "attributes": p.get("attributes") or None}, audio) for p, audio in clips]
    values: dict[str, float] = {}
    notes: dict[str, str] = {}
    for spec, metric in metrics:
        name = spec["name"]
        if isinstance(metric, Exception):
            notes[name] = f"error: {metric}"
            continue
        if getattr(metric, "scope", None) == "set":
            subject = [a for _, a in (codec_clips if spec["subject"] == "codec" else generated)]
            try:
                result = _set_metric(metric, subject, rate, references, cascade.conditioner)
                values.update({("codec." if spec["subject"] == "codec" else "") + k: v for k, v in result.items()})
            except InputError as exc:
                notes[name] = str(exc)
            except CadenzaError as exc:
                notes[name] = f"error: {exc}"
            continue
        order = {"auto": ("generated", "codec"), "generated": ("generated",), "codec": ("codec",)}[spec["subject"]]
        reason = None
        for subject in order:
            pairs = generated if subject == "generated" else codec_clips
            if not pairs:
                missing = "no reference recordings to encode and decode (prompts or references from a manifest with audio)"
                reason = f"{reason}; {missing}" if reason else missing
                continue
            try:
                result = _clip_metric(metric, pairs, rate, cascade.conditioner)
            except InputError as exc:
                reason = str(exc)
                continue
            except CadenzaError as exc:  # e.g. missing weights of the metric's own model: the speed figures stand
                reason = f"error: {exc}"
                break
            values.update({("codec." if subject == "codec" else "") + k: v for k, v in result.items()})
            reason = None
            break
        if reason:
            notes[name] = reason
    return values, notes


def _clip_metric(metric: Any, pairs: list, rate: int, conditioner: Any) -> dict[str, float]:
    """Mean of each numeric value over the clips (labels are left out; NaN clips are skipped)."""
    sums: dict[str, list[float]] = {}
    for inputs, audio in pairs:
        given = {k: v for k, v in {**inputs, "conditioner": conditioner}.items() if v is not None}
        result = metric(audio, sample_rate=rate, **given)
        for key, value in result.items():
            if isinstance(value, (int, float)):  # bools count as 0/1; labels are left out
                sums.setdefault(key, []).append(float(value))
    out = {}
    for key, items in sums.items():
        finite = [v for v in items if math.isfinite(v)]
        out[key] = sum(finite) / len(finite) if finite else float("nan")
    return out


def _set_metric(metric: Any, audio: list, rate: int, references: list, conditioner: Any) -> dict[str, float]:
    inputs: dict[str, Any] = {"conditioner": conditioner}
    if references:
        ref_rate = references[0][1]
        inputs["reference"] = [resample(a, r, ref_rate) for a, r in references]
        inputs["reference_rate"] = ref_rate
    result = metric(audio, sample_rate=rate, **inputs)
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float))}
