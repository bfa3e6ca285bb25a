"""Prompt adherence: did the audio come out with the attributes its prompt asked for?

The prompt's attributes are those ``cadenza corpus`` labels clips with (its manifest fields);
the audio's are measured by the attribute estimators (:mod:`cadenza.plugins.estimators.model`,
and the instrument classifier when installed). Each attribute is a yes/no match:

==============  ==============================================================
``tempo_class``  slow / medium / fast (from the measured BPM)
``key``          the tonic's pitch class ("C#" and "Db" are the same), either mode
``mode``         major / minor
``register``     low / mid / high of the lead, relative to the asked instrument's range
``dynamics``     soft / loud
``drums``        present or not (the style is not measured)
``instrument``   the lead's family (needs the ``instrument`` estimator)
==============  ==============================================================

Without ``attributes``, a ``prompt`` is read for them with the corpus captions' vocabulary
(:func:`cadenza.plugins.workflows.corpus.caption_reader.read_caption`), so any prompt can be
scored (``--rerank-metric adherence``). The score of a clip is the fraction of its checked attributes that match. Estimators are not
perfect, so a perfect generator does not score 1: :mod:`cadenza.plugins.workflows.evaluate.runner` measures the
same score on the reference clips (the estimators' *ceiling*) and reports the generator's
score as a share of it too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cadenza.core.errors import InputError
from cadenza.plugins.estimators.model import UNKNOWN, as_batch, pitch_class
from cadenza.plugins.estimators import AttributesConfig
from cadenza.plugins.workflows.corpus.caption_reader import read_caption

ATTRIBUTES = ("tempo_class", "key", "mode", "register", "dynamics", "drums", "instrument")


def _drums_present(value: Any) -> str:
    """A corpus drum style ("rock", ...), "yes", "none" or a bool -> "yes" / "none"."""
    if isinstance(value, bool):
        return "yes" if value else "none"
    return "none" if str(value).strip().lower() in ("none", "no", "false", "") else "yes"


# attribute -> (the estimator output it is read from, how a wanted and a measured value are compared)
_SAME = lambda wanted, measured: str(wanted).strip().lower() == str(measured).strip().lower()
MATCHERS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "tempo_class": ("tempo_class", _SAME),
    "key": ("key", lambda wanted, measured: pitch_class(measured) >= 0 and pitch_class(wanted) == pitch_class(measured)),
    "mode": ("mode", _SAME),
    "register": ("register", _SAME),
    "dynamics": ("dynamics", _SAME),
    "drums": ("drums", lambda wanted, measured: measured != UNKNOWN and _drums_present(wanted) == _drums_present(measured)),
    "instrument": ("instrument", _SAME),
}


def wanted_attributes(attributes: Any, checked: tuple[str, ...]) -> dict[str, Any]:
    """The checked attributes a prompt states (others are not scored); errors name the bad field."""
    if not isinstance(attributes, dict):
        raise InputError(f"attributes must be a mapping of attribute -> value, got {type(attributes).__name__}")
    return {name: attributes[name] for name in checked if attributes.get(name) not in (None, "")}


def score(wanted: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """``{"adherence": fraction, "<attr>_match": 1.0 / 0.0, "estimated_<attr>": label}`` for the wanted attributes.

    An attribute the estimators did not measure (no ``instrument`` estimator installed, say) is
    left out rather than counted as a miss; "unknown" (silence) is a miss.
    """
    out: dict[str, Any] = {}
    matches = []
    for name, value in wanted.items():
        field, same = MATCHERS[name]
        if field not in measured:
            continue
        ok = measured[field] != UNKNOWN and bool(same(value, measured[field]))
        out[f"{name}_match"] = float(ok)
        out[f"estimated_{name}"] = measured[field]
        matches.append(ok)
    out["adherence"] = sum(matches) / len(matches) if matches else float("nan")
    out["attributes_checked"] = len(matches)
    return out


class AdherenceMetric:
    """``metric(audio, sample_rate=SR, attributes={...}) -> {"adherence": ..., "<attr>_match": ...}``.

    ``audio`` ``[C, S]`` gives one result; ``[B, C, S]`` with ``attributes`` one mapping per clip
    (or one for all) gives lists. The register is judged relative to the *asked* instrument's
    range, as the corpus labels it.
    """

    def __init__(self, config: Any, estimator: Any):
        self.config = config
        self.estimator = estimator

    def __call__(self, audio: Any, sample_rate: int | None = None, attributes: Any = None, prompt: Any = None,
                 **inputs: Any) -> dict[str, Any]:
        if attributes is None and isinstance(prompt, str):
            attributes = read_caption(prompt)
        elif attributes is None and isinstance(prompt, (list, tuple)) and all(isinstance(p, str) for p in prompt):
            attributes = [read_caption(p) for p in prompt]
        if attributes is None:
            raise InputError("the adherence metric needs `attributes` (what the prompt asked for) or the `prompt`")
        batch, single = as_batch(audio)
        per_clip = attributes if isinstance(attributes, (list, tuple)) else [attributes] * len(batch)
        if len(per_clip) != len(batch):
            raise InputError(f"got {len(per_clip)} attribute sets for {len(batch)} clips")
        results = []
        for clip, attrs_ in zip(batch, per_clip):
            wanted = wanted_attributes(attrs_, tuple(self.config.attributes))
            instrument = attrs_.get("instrument") or None
            measured = self.estimator(clip, sample_rate=sample_rate, **({"instrument": instrument} if instrument else {}))
            results.append(score(wanted, measured))
        if single:
            return results[0]
        names = sorted({k for r in results for k in r})
        return {k: [r.get(k, float("nan")) for r in results] for k in names}


def build_adherence(config: Any, context: Any = None) -> AdherenceMetric:
    from cadenza.plugins.estimators.model import build_attributes

    return AdherenceMetric(config, build_attributes(AttributesConfig(sample_rate=config.sample_rate)))
