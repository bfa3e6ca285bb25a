"""The component contract: the kinds, what each kind must provide, and how one is registered.

A plugin registers components through the ``register`` callback its hook receives (see
:mod:`cadenza.core.hookspecs`). Registration stores a cheap :class:`ComponentEntry`; the
component itself is built only when a spec asks for it, so discovery never imports torch or
a model library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from cadenza.core.layout import StageLayout
from cadenza.core.types import Conditioning, ConditioningInfo, Detection, SemanticInfo, TokenizerInfo
from cadenza.core.engine.weights import Weights

if TYPE_CHECKING:
    import torch

KINDS: tuple[str, ...] = (
    "tokenizer",
    "semantic_tokenizer",
    "conditioner",
    "stage_model",
    "sampler",
    "metric",
    "melody_source",
    "watermark",
    "steering",
)


def import_object(reference: str) -> Any:
    """``"package.module:attr.sub"`` -> the object, importing the module only now (entry-point syntax)."""
    module_name, _, attr = reference.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


@attrs.frozen
class NoConfig:
    """Config class of a component that takes no parameters."""


@attrs.frozen
class BuildContext:
    """What a factory gets besides its config: weights, device, and (stage models) the layout."""

    weights: Weights = Weights("random", "random")
    device: str = "cpu"
    layout: StageLayout | None = None


Factory = Callable[[Any, BuildContext], Any]


@attrs.frozen
class ComponentEntry:
    """One registered component: enough to list it, validate params, and build it later.

    ``needs_weights`` is False for a component with nothing learned or fitted (signal
    processing, a sampling rule): its ``weights: random`` is not "untrained", so it is never
    reported as such (:meth:`cadenza.core.engine.cascade.Cascade.random_components`).
    """

    name: str
    kind: str
    factory: Factory | str = attrs.field(repr=False)
    config: type = NoConfig
    description: str = ""
    default_weights: str = "random"
    needs_weights: bool = True
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    def resolve_factory(self) -> Factory:
        """The factory callable; a ``"module:attr"`` string is imported only now."""
        return self.factory if callable(self.factory) else import_object(self.factory)

    def build(self, config: Any, context: BuildContext | None = None) -> Any:
        return self.resolve_factory()(config, context or BuildContext())


@runtime_checkable
class Tokenizer(Protocol):
    """An acoustic codec: waveform <-> ``[B, Q, T]`` codes. Config: ``describe(weights) -> TokenizerInfo``."""

    info: TokenizerInfo

    def encode(self, audio: "torch.Tensor") -> "torch.Tensor":
        """``[B, C, S]`` float at ``info.sample_rate`` -> ``[B, num_codebooks, T]`` int64."""

    def decode(self, codes: "torch.Tensor") -> "torch.Tensor":
        """``[B, num_codebooks, T]`` int64 -> ``[B, C, S]`` float."""


@runtime_checkable
class SemanticTokenizer(Protocol):
    """Audio -> one stream of semantic ids. Config: ``describe(weights) -> SemanticInfo``."""

    info: SemanticInfo

    def tokenize(self, audio: "torch.Tensor") -> "torch.Tensor":
        """``[B, C, S]`` float at ``info.sample_rate`` -> ``[B, T]`` int64 ids < vocab_size."""

    # Optional, for k-means tokenizers (``cadenza fit-kmeans`` uses it):
    # features(audio [B, C, S], sample_rate) -> [B, T, D] float, the vectors that are clustered.
    # Optional, for the beat grid (cadenza.core.steering.beat_grid): token_onsets() -> [vocab_size] float
    # in [0, 1], how much of a note onset each id is.


@runtime_checkable
class Conditioner(Protocol):
    """Text (and, for joint models, audio) -> :class:`Conditioning`.

    Config: ``describe(weights) -> ConditioningInfo``. Joint audio-text models also implement
    ``embed_audio(audio, sample_rate)`` and set ``info.has_audio``.
    """

    info: ConditioningInfo

    def embed_text(self, texts: Sequence[str]) -> Conditioning: ...


@runtime_checkable
class StageModel(Protocol):
    """A token model for one cascade stage, sized from its :class:`StageLayout`.

    The written stream is flattened frame-major (frame 0 codebooks 0..Q-1, then frame 1, ...).
    Position ``i`` of the logits predicts written token ``i``; its codebook is ``i % Q``.
    The core decode loop owns sampling and classifier-free guidance; the model only needs a
    full (teacher-forced) pass and an incremental (KV-cache) pass that agree.
    """

    layout: StageLayout

    def forward(self, request: "StageRequest", written: "torch.Tensor") -> "torch.Tensor":
        """Teacher forcing: ``written`` ``[B, N]`` -> logits ``[B, N + 1, V]``."""

    def prefill(self, request: "StageRequest", max_new_tokens: int) -> Any:
        """Encode conditioning and read streams; return a decode state with ``.logits`` ``[B, V]``."""

    def step(self, state: Any, tokens: "torch.Tensor") -> "torch.Tensor":
        """Append ``tokens`` ``[B]`` to the state; return logits ``[B, V]`` for the next one."""

    # Optional, for models that predict every codebook per step (MusicGen): ``codebook_delays``,
    # see cadenza.core.engine.delayed_decode.
    # Optional, for models conditioned by a melody's sound (MusicGen-melody's chroma): the config
    # class sets ``conditions_on_melody: ClassVar[bool] = True`` (so a pipeline is known to take a
    # melody before anything is built) and the model has ``melody_sample_rate: int`` and
    # ``with_melody(audio [B, S] mono float at that rate) -> StageModel``: the same model with
    # that audio in its conditioning. ``--melody`` then conditions this stage instead of steering
    # a semantic stage: the cascade gives each window the melody from the window's first frame
    # on (cycled past its end; a MIDI melody rendered by cadenza.core.steering.melody.synthesize),
    # and under guidance the null rows (``drop_conditioning``) get the model's null melody. The
    # ``melody`` steering (kind ``steering``) is what calls it.


@attrs.frozen
class StageRequest:
    """The inputs of one stage run.

    ``reads``: one ``[B, Q, T]`` int64 tensor per slice in ``layout.reads``.
    ``drop_conditioning``: ``[B]`` bool, True where a row uses the learned null condition
    (conditioning dropout in training; the unconditional half under guidance).
    """

    batch_size: int
    reads: tuple["torch.Tensor", ...] = ()
    conditioning: Conditioning | None = None
    drop_conditioning: "torch.Tensor | None" = None


@runtime_checkable
class Sampler(Protocol):
    """Picks one token per row from logits ``[B, V]`` (float32), using ``generator``."""

    def __call__(self, logits: "torch.Tensor", generator: "torch.Generator") -> "torch.Tensor": ...


@runtime_checkable
class Metric(Protocol):
    """Scores audio. Returns named float values (higher-is-better is stated in the description)."""

    def __call__(self, audio: Any, **inputs: Any) -> dict[str, float]: ...


@runtime_checkable
class MelodySource(Protocol):
    """Reads a file (MIDI, humming, a recording, ...) into a :class:`cadenza.core.steering.melody.Melody`.

    Its config class declares the file suffixes it reads as a class attribute, e.g.
    ``suffixes: ClassVar[tuple[str, ...]] = (".mid", ".midi")``, so ``--melody FILE`` can pick a
    source without building any. Unreadable input raises :class:`cadenza.core.errors.InputError`.
    ``max_seconds`` is how much of the melody the run can use (None: all of it): a source
    reads no further, so memory and time stay bounded however long the file is.
    """

    def __call__(self, path: str, max_seconds: float | None = None) -> Any: ...


@runtime_checkable
class Watermark(Protocol):
    """Marks generated audio as generated, and finds the mark again after it was edited.

    ``embed`` must leave the audio as it sounds (its benchmark reports the SNR) and keep its
    shape; ``detect`` reads any length the mark can be found in, at any sample rate, and says
    how sure it is as a p-value under "this audio was never marked with this key": the
    false-positive rate is then the threshold the caller picks, not a guess.
    """

    def embed(self, audio: "torch.Tensor", sample_rate: int, payload: int) -> "torch.Tensor":
        """``[C, S]`` float audio -> the same shape, marked; ``payload`` fits in ``payload_bits``."""

    def detect(self, audio: "torch.Tensor", sample_rate: int) -> "Detection":
        """``[C, S]`` float audio -> a :class:`cadenza.core.types.Detection`."""



@attrs.define
class SteeringRun:
    """What a :class:`Steering` sees of one ``Cascade.generate`` run, once, before its first window.

    ``cascade``: the built :class:`cadenza.core.engine.cascade.Cascade` (its ``pipeline``,
    ``models``, ``tokenizer``, ``semantic_tokenizer``, ``conditioner``, ``frame_rates``,
    ``sample_rate`` and ``device``). ``windows``: the long-form plan
    (:class:`cadenza.core.engine.longform.Window`; one for one pass), each ``window_seconds``
    long at most. ``primed``: the run continues a prime. ``history``: each stream's tokens
    ``[B, Q, T]`` before the first window (a prime's, else none); a steering may write a stream's
    prefix here, which every stage writing that stream then continues (a forced melody does).
    """

    cascade: Any
    prompts: tuple[str, ...]
    seconds: float
    windows: tuple[Any, ...]
    window_seconds: float
    primed: bool
    history: dict[str, Any]

    @property
    def batch(self) -> int:
        return len(self.prompts)


@attrs.define
class SteeringWindow:
    """One window of a steered run, as the stages are about to sample it.

    ``span``: the window (``index``, ``start``, ``new``, ``end`` seconds from the output's start);
    ``begins[stream]``: the output frame of that stream's written position 0 in this window (a
    logit bias indexed by output frame adds it); ``history``: each stream's tokens before this
    window; ``conditioning``: what the window's stages are conditioned on, the text's unless a
    steering's ``window`` replaced it (piece memory mixes in the opening's sound).
    """

    run: SteeringRun
    span: Any
    begins: dict[str, int]
    history: dict[str, Any]
    conditioning: Conditioning | None


@runtime_checkable
class Steering(Protocol):
    """Steers a generation while it is decoded, without retraining a model: a melody, a beat grid,
    piece memory, or a third party's idea, passed as ``Cascade.generate(..., steering=[...])``.

    For one run the cascade calls, in list order:

    1. ``plan(run)`` once, before the first window (:class:`SteeringRun`): check what the run
       asks for, refusing with one :class:`cadenza.core.errors.InputError` line; prepare, e.g.
       set a stream's written prefix in ``run.history``. Forget any earlier run here: one object
       may steer many runs (``--rerank``'s candidates).
    2. ``window(window)`` as each window starts (:class:`SteeringWindow`), e.g. to replace its
       ``conditioning``.
    3. ``wrap(model, stage, window) -> model`` for each stage about to sample in the window
       (``stage.spec``, ``stage.layout``): the model to decode with, the one given when this
       steering leaves the stage alone. A logits processor is
       :class:`cadenza.core.steering.logit_bias.BiasedModel`; a stage model that hears a melody is
       ``model.with_melody(audio)``. Wrappers stack in list order.
    4. ``finish(audio)`` with the decoded audio ``[B, C, S]`` at the codec's rate, before the
       output stage (loudness, watermark).
    5. ``describe(row) -> dict``: what clip ``row``'s sidecar records, as top-level keys (``{}``
       when this run was not steered by it); ``Generation.steering`` holds them per row.

    A class that subclasses this protocol inherits the no-op ``window`` and ``finish``. Built-in
    ones (``cadenza components --kind steering``) are made from the CLI's ``--melody``, ``--hold``,
    ``--beat`` and ``--bpm`` and the spec's ``output.hold`` and ``output.beat`` by
    ``Cascade.steering(...)``.
    """

    def plan(self, run: SteeringRun) -> None: ...

    def window(self, window: SteeringWindow) -> None:
        """Called as each window starts; nothing by default."""

    def wrap(self, model: Any, stage: Any, window: SteeringWindow) -> Any: ...

    def finish(self, audio: "torch.Tensor") -> None:
        """Called with the decoded audio; nothing by default."""

    def describe(self, row: int) -> dict[str, Any]: ...
