"""The ``melody`` steering: a melody steers the semantic stage, or conditions a stage that hears it.

Three modes, picked from the pipeline and the strength (the algorithms are
:mod:`cadenza.core.steering.melody`'s):

* **chroma**: a stage model that hears a melody's sound (``melody_sample_rate``,
  MusicGen-melody) gets each row's melody audio through ``with_melody``, every window from its
  own first frame on; a strength has no meaning there and is refused.
* **forced** (no strength): the melody's semantic tokens are the written prefix of the semantic
  stream, which the semantic stage only continues.
* **guided** (a strength): the semantic stage's logits get that bonus on the melody's token at
  each frame it covers.

A melody needs one of those stages and no prime (their semantic tokens would compete).
"""

from __future__ import annotations

from typing import Any

from cadenza.core.components import BuildContext, Steering, SteeringRun, SteeringWindow
from cadenza.core.errors import InputError
from cadenza.core.steering.melody import (check_strength, guidance_bias, guided_model, melody_audio, melody_rows,
                                          melody_window, semantic_prefix)


def melody_stages(cascade: Any) -> list[str]:
    """The stages whose model is conditioned by a melody's sound (``melody_sample_rate``)."""
    return [name for name, model in cascade.models.items() if getattr(model, "melody_sample_rate", None)]


class MelodySteering(Steering):
    """Follows ``melody`` (one :class:`~cadenza.core.steering.melody.Melody`, or one per prompt)."""

    def __init__(self, melody: Any, strength: float | None = None):
        self.melody = melody
        self.strength = check_strength(strength)
        self.rows: list | None = None
        self.guide = self.sound = None
        self.device = "cpu"

    def plan(self, run: SteeringRun) -> None:
        cascade = run.cascade
        self.rows, self.guide, self.sound, self.device = melody_rows(self.melody, run.batch), None, None, cascade.device
        if self.rows is None:
            return
        if run.primed:
            raise InputError("a melody cannot be combined with a prime: give one or the other")
        stages = melody_stages(cascade)
        name = cascade.pipeline.spec.name
        if stages:
            if self.strength is not None:
                raise InputError(f"pipeline {name!r} conditions stage {stages[0]!r} on the melody's chroma: a melody "
                                 "strength (a logit bonus on semantic tokens) has no meaning there; drop it")
            rate = cascade.models[stages[0]].melody_sample_rate
            self.sound = (rate, melody_audio(self.rows, rate, run.seconds))
            return
        if "semantic" not in cascade.frame_rates:
            raise InputError(f"pipeline {name!r} has no semantic stage for a melody to steer "
                             "(a melody needs a MusicLM-style cascade with a semantic tokenizer)")
        if cascade.semantic_tokenizer is None:
            raise InputError(f"pipeline {name!r} has no semantic tokenizer to turn a melody into semantic tokens")
        info = cascade.pipeline.semantic_tokenizer.info
        if self.strength is None:
            run.history["semantic"] = semantic_prefix(cascade.semantic_tokenizer, info, self.rows,
                                                      run.seconds).to(cascade.device)
        else:
            vocab = next(s.layout.writes.codebook_size for s in cascade.pipeline.stages
                         if s.layout.writes.stream == "semantic")
            self.guide = guidance_bias(cascade.semantic_tokenizer, info, self.rows, run.seconds, self.strength, vocab)

    def wrap(self, model: Any, stage: Any, window: SteeringWindow) -> Any:
        writes = stage.layout.writes
        if self.sound is not None and getattr(model, "melody_sample_rate", None):
            rate, audio = self.sound
            heard_from = round(window.begins.get(writes.stream, 0) / writes.frame_rate * rate)
            return model.with_melody(melody_window(audio, heard_from).to(self.device))
        if self.guide is not None and writes.stream == "semantic":
            return guided_model(model, self.guide.to(self.device), offset=window.begins.get("semantic", 0))
        return model

    def describe(self, row: int) -> dict[str, Any]:
        if not self.rows:
            return {}
        mode = "chroma" if self.sound is not None else "forced" if self.strength is None else "guided"
        return {"melody": {"mode": mode, **self.rows[row].describe(), "strength": self.strength}}


def build(config: Any, context: BuildContext | None = None) -> MelodySteering:
    return MelodySteering(config.melody, config.strength)
