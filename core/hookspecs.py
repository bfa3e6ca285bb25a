"""Hook specifications: the whole plugin API of Cadenza.

A plugin is a module (or object) named by an entry point in the ``cadenza`` group. It
implements any of these hooks with the :data:`hookimpl` marker::

    from cadenza.core.hookspecs import hookimpl

    @hookimpl
    def register_samplers(register):
        register("argmax-plus", "my_pkg.sampling:ArgmaxPlus", config=MyConfig,
                 description="greedy with a twist")

Registration hooks are called once at discovery and must stay cheap: pass the factory as a
``"module:attr"`` string (or a function that imports inside) so that model libraries are
imported only when a spec builds the component. Each hook's docstring below is its reference.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

PROJECT = "cadenza"
ENTRY_POINT_GROUP = "cadenza"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

class Registrar(Protocol):
    """The ``register`` callback every component registration hook receives.

    ``register(name, factory, *, config=NoConfig, description="", default_weights="random", needs_weights=True)``

    - ``name``: the name a spec uses (unique per kind across all installed plugins).
    - ``factory``: callable ``(config, context: BuildContext) -> component``, or its
      ``"module:attr"`` import path (preferred: imported only when built).
    - ``config``: an attrs class; a spec's ``params:`` are checked against its fields.
    - ``description``: one line for ``cadenza components``.
    - ``default_weights``: what ``weights:`` means when a spec leaves it out.
    - ``needs_weights``: False for a component with nothing learned or fitted (signal
      processing, a fixed rule); it is then never reported as random, untrained weights.

    ``register_pipelines`` receives ``register(name, path_to_yaml, description=...)``.
    """

    def __call__(self, name: str, factory: Any, *, config: type = ..., description: str = "",
                 default_weights: str = "random", needs_weights: bool = True) -> None: ...


@hookspec
def register_tokenizers(register: Registrar) -> None:
    """Register acoustic tokenizers (neural codecs such as EnCodec or DAC).

    The config class implements ``describe(weights) -> TokenizerInfo`` (sample rate, frame
    rate, number and size of codebooks) without loading weights; the built component
    implements :class:`cadenza.core.components.Tokenizer` (``encode`` / ``decode``).
    """


@hookspec
def register_semantic_tokenizers(register: Registrar) -> None:
    """Register semantic tokenizers (e.g. HuBERT or w2v-BERT features + k-means).

    The config class implements ``describe(weights) -> SemanticInfo``; the component
    implements :class:`cadenza.core.components.SemanticTokenizer` (``tokenize``).
    """


@hookspec
def register_conditioners(register: Registrar) -> None:
    """Register conditioners (text encoders, joint audio-text models such as MuLan or CLAP).

    The config class implements ``describe(weights) -> ConditioningInfo`` (pooled, sequence
    or tokens, and its width); the component implements
    :class:`cadenza.core.components.Conditioner` (``embed_text``, optionally ``embed_audio``).
    """


@hookspec
def register_stage_models(register: Registrar) -> None:
    """Register stage models: token models that run one cascade stage.

    The factory receives ``context.layout`` (:class:`cadenza.core.layout.StageLayout`) and
    sizes itself from it. The config class may implement ``check(layout, weights) -> list[str]``
    to report incompatibilities (e.g. a checkpoint trained for another codec) before building.
    The component implements :class:`cadenza.core.components.StageModel`.

    A stage conditioned on a melody's audio (MusicGen-melody's chroma) says so with a config
    class attribute ``conditions_on_melody = True``; its model then has ``melody_sample_rate``
    and ``with_melody(audio)``, which returns the stage with that audio in its conditioning,
    and ``--melody`` goes to it instead of steering the semantic stage.
    """


@hookspec
def register_samplers(register: Registrar) -> None:
    """Register samplers: ``sampler(logits [B, V], generator) -> tokens [B]``.

    Guidance is applied by the cascade before the sampler sees the logits, so samplers
    compose with classifier-free guidance in every stage.
    """


@hookspec
def register_metrics(register: Registrar) -> None:
    """Register metrics: ``metric(audio, **inputs) -> {name: value}`` used by benchmarks."""


@hookspec
def register_melody_sources(register: Registrar) -> None:
    """Register melody sources: ``source(path) -> Melody`` for ``cadenza generate --melody FILE``.

    A source reads a file (a MIDI file, humming, another recording) into a
    :class:`cadenza.core.steering.melody.Melody` (notes as ``(start_s, end_s, midi_pitch, velocity)``),
    which the ``melody`` steering turns into semantic tokens that steer the semantic stage. The config
    class lists the file suffixes it reads in a class attribute, e.g.
    ``suffixes: ClassVar[tuple[str, ...]] = (".mid", ".midi")``: ``--melody FILE`` uses the
    first source (by name) whose ``suffixes`` hold the file's suffix, ``--melody-source NAME``
    picks one. The component implements :class:`cadenza.core.components.MelodySource` and
    raises :class:`cadenza.core.errors.InputError` for a file it cannot read.
    """


@hookspec
def register_watermarks(register: Registrar) -> None:
    """Register watermarks: ``embed(audio, sample_rate, payload)`` and ``detect(audio, sample_rate)``.

    ``cadenza generate`` marks every file it writes with the spec's ``output.watermark`` (the
    built-in one by default; ``--no-watermark`` turns it off) and records it in the sidecar;
    ``cadenza detect FILE...`` reports what a watermark finds. The component implements
    :class:`cadenza.core.components.Watermark`; its config class says what it needs (a key, a
    threshold). ``detect`` returns a :class:`cadenza.core.types.Detection`.
    """


@hookspec
def register_steering(register: Registrar) -> None:
    """Register steering: decode-time control of a generation (a melody, a beat grid, piece memory).

    The built component implements :class:`cadenza.core.components.Steering`: ``plan(run)`` once
    per run (check, refuse with one ``InputError`` line, or write a stream's prefix),
    ``window(window)`` per long-form window, ``wrap(model, stage, window)`` per stage and window
    (usually a ``cadenza.core.steering.logit_bias.BiasedModel`` adding a logit bias),
    ``finish(audio)`` with the decoded audio, and ``describe(row)``, the sidecar's entries for a
    clip. The factory gets its config (``registry.get("steering", NAME)``, built with
    ``entry.build(entry.config(...))``) and a ``BuildContext``; a steering object passed in
    ``Cascade.generate(..., steering=[...])`` runs whether or not it was registered.
    """


@hookspec
def register_pipelines(register: Registrar) -> None:
    """Register pipeline presets: ``register(name, path_to_yaml, description=...)``.

    A preset is usable wherever a spec path is, e.g. ``cadenza generate --pipeline NAME``.
    """


@hookspec
def before_stage(stage: Any, request: Any) -> None:
    """Observer: a cascade stage is about to run. ``stage`` is the stage's spec
    (:class:`cadenza.core.spec.schema.StageSpec`); ``request`` its :class:`StageRequest`."""


@hookspec
def after_stage(stage: Any, tokens: Any, seconds: float) -> None:
    """Observer: a stage finished, writing ``tokens`` ``[B, Q, T]`` in ``seconds`` wall time."""


@hookspec
def on_stage_error(stage: Any, error: BaseException) -> None:
    """Observer: a stage raised ``error``; it is re-raised after all observers ran."""
