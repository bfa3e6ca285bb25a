"""Reranking: generate K candidates per prompt, score each with a metric, keep the best.

MusicLM draws several samples and keeps the one whose MuLan audio embedding is closest to
the text's; here the scorer is any metric plugin. By default (:func:`default_metric`) it is
``text-similarity``, the pipeline's own conditioner's audio-text cosine, when the conditioner
embeds audio and text in one space (MuLan, CLAP); with a text-only conditioner (T5, MiniLM) it
is ``adherence``: how many of the attributes the prompt states (instrument, key, tempo, ...)
the attribute estimators measure in the candidate. A metric is called as
``metric(audio [C, S], sample_rate=SR, prompt=TEXT, conditioner=CONDITIONER)`` and returns
``{name: value}``; the score is the value under ``key`` when given (``--rerank-metric
NAME:KEY``), else under the metric's name with ``-`` as ``_`` (``text_similarity``), else the
first finite number it returned. Higher is better; a candidate scored NaN ranks last.

Candidate ``i`` of a prompt with seed ``s`` uses seed :func:`candidate_seed` ``(s, i)``;
candidate 0 is ``s`` itself, so ``K = 1`` is plain generation. Candidates are generated as
``K`` batches of the prompts (each row with its own seed's generator), so a prompt's
candidates do not depend on which other prompts share its batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from cadenza.core.errors import InputError

JOINT_METRIC, PROMPT_METRIC = "text-similarity", "adherence"
PROBE_SECONDS = 0.5  # the dry run that checks a metric works with this pipeline before generating


MAX_CANDIDATES = 64  # each candidate is a whole generation; past this, rerank a batch instead


def check_count(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"--rerank must be a number of candidates >= 1, got {k!r}")
    if k > MAX_CANDIDATES:
        raise InputError(f"--rerank must be at most {MAX_CANDIDATES} candidates, got {k}")
    return k


def candidate_seed(seed: int, index: int) -> int:
    """The seed of candidate ``index`` of a prompt generated with ``seed`` (index 0: ``seed``)."""
    return seed if index == 0 else (seed * 1_000_003 + index * 7_919 + 1) % (2**31 - 1)


def parse_metric(text: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME:KEY`` -> ``(name, key or None)``."""
    name, _, key = text.partition(":")
    if not name.strip():
        raise InputError(f"--rerank-metric needs a metric name, got {text!r}")
    return name.strip(), key.strip() or None


def score_of(values: Any, name: str, key: str | None) -> float:
    """The number to maximise from a metric's result (see the module docstring)."""
    if not isinstance(values, dict):
        raise InputError(f"metric {name!r} returned {type(values).__name__}, not a mapping of scores")
    wanted = key or name.replace("-", "_")
    if wanted in values:
        value = values[wanted]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"metric {name!r}: {wanted!r} is {value!r}, not a number to rank by")
        return float(value)
    if key is not None:
        raise InputError(f"metric {name!r} gives no {key!r}; it gives: {', '.join(values) or 'nothing'}")
    numbers = [float(v) for v in values.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numbers:  # the first finite one; all NaN (e.g. silence) ranks last
        return next((n for n in numbers if math.isfinite(n)), numbers[0])
    raise InputError(f"metric {name!r} gives no number to rank by (it gives: {', '.join(values) or 'nothing'}); "
                     "name one with --rerank-metric NAME:KEY")


@attrs.frozen
class Scorer:
    """A built metric plus how to read its score."""

    name: str
    key: str | None
    metric: Callable[..., Any] = attrs.field(repr=False)
    conditioner: Any = attrs.field(repr=False, default=None)

    def values(self, audio: Any, sample_rate: int, prompt: str) -> dict[str, Any]:
        return self.metric(audio, sample_rate=sample_rate, prompt=prompt, conditioner=self.conditioner)

    def __call__(self, audio: Any, sample_rate: int, prompt: str) -> tuple[float, dict[str, Any]]:
        values = self.values(audio, sample_rate, prompt)
        score = score_of(values, self.name, self.key)
        return (score if math.isfinite(score) else -math.inf), values


def default_metric(conditioner: Any) -> str:
    """The metric ``--rerank`` uses when none is named: audio-text similarity where the conditioner
    has an audio tower (MusicLM's reranking), else the prompt's stated attributes measured in the audio."""
    joint = hasattr(conditioner, "embed_audio") or hasattr(conditioner, "audio_embedding")
    return JOINT_METRIC if joint else PROMPT_METRIC


def build_scorer(metric: str | None, registry: Any, conditioner: Any, sample_rate: int) -> Scorer:
    """Build the metric named ``NAME[:KEY]`` (``None``: :func:`default_metric`) and check, on half a second of quiet noise, that it
    can score this pipeline's audio (e.g. ``text-similarity`` needs a conditioner that embeds
    audio): a problem is a one-line error before anything is generated."""
    import torch

    name, key = parse_metric(metric or default_metric(conditioner))
    entry = registry.get("metric", name)
    scorer = Scorer(name, key, entry.build(entry.config()), conditioner)
    probe = 1e-3 * torch.randn(1, round(PROBE_SECONDS * sample_rate), generator=torch.Generator().manual_seed(0))
    try:
        values = scorer.values(probe, sample_rate, "a probe")
    except InputError as exc:
        raise InputError(f"--rerank-metric {name}: {exc}") from None
    if key is not None or name.replace("-", "_") in (values or {}):
        score_of(values, name, key)
    elif isinstance(values, dict) and not any(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in values.values()):
        raise InputError(f"--rerank-metric {name}: it gives no number to rank by ({', '.join(values) or 'nothing'})")
    return scorer


def rerank(generate: Callable[[list[int]], Any], prompts: Sequence[str], seeds: Sequence[int], k: int,
           scorer: Scorer) -> tuple[Any, list[dict[str, Any]]]:
    """Generate ``k`` candidates per prompt and keep the best of each.

    ``generate(row_seeds) -> Generation`` generates the prompts (one seed per row). Returns the
    generation holding each prompt's best candidate (its seed in ``row_seeds``) and, per prompt,
    ``{"metric", "key", "chosen", "candidates": [{"seed", "score", "values"}, ...]}`` for the sidecar.
    """
    import torch

    k = check_count(k)
    generations, scores = [], [[] for _ in prompts]
    ranks: list[list[float]] = [[] for _ in prompts]
    for index in range(k):
        generation = generate([candidate_seed(s, index) for s in seeds])
        generations.append(generation)
        for row, prompt in enumerate(prompts):
            score, values = scorer(generation.audio[row], generation.sample_rate, prompt)
            ranks[row].append(score)
            scores[row].append({"seed": generation.row_seeds[row], "score": round(score, 6) if math.isfinite(score)
                                else None, "values": _plain(values)})
    chosen = [max(range(k), key=ranks[row].__getitem__) for row in range(len(prompts))]
    first = generations[0]
    audio = torch.stack([generations[c].audio[row] for row, c in enumerate(chosen)])
    tokens = {stream: torch.stack([generations[c].tokens[stream][row] for row, c in enumerate(chosen)])
              for stream in first.tokens}
    timings = {stage: sum(g.stage_seconds.get(stage, 0.0) for g in generations) for stage in first.stage_seconds}
    per_row = {field: tuple(getattr(generations[c], field)[row] for row, c in enumerate(chosen))
               for field in ("levels", "steering") if getattr(first, field)}  # what each chosen clip measured
    best = attrs.evolve(first, audio=audio, tokens=tokens, stage_seconds=timings, **per_row,
                        seed=tuple(scores[row][c]["seed"] for row, c in enumerate(chosen)))
    report = [{"metric": scorer.name, "key": scorer.key, "chosen": c, "candidates": scores[row]}
              for row, c in enumerate(chosen)]
    return best, report


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """A metric's values as JSON-friendly data (numbers rounded; other values as they are, or str)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, float):
            out[name] = round(value, 6) if math.isfinite(value) else None
        elif isinstance(value, (int, str, bool)) or value is None:
            out[name] = value
        else:
            out[name] = str(value)
    return out
