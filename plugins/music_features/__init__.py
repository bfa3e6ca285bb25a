"""``music-features``: chroma, onset, beat phase and dominant pitch per frame -> nearest k-means centroid.

Registration and config only (no torch: discovery stays light); the model lives in
:mod:`.music_features`. A download-free semantic tokenizer whose features are musical by
construction: MusicLM's semantic tokens carry melody and rhythm, and these features carry
them explicitly, so a MIDI melody maps to the same feature space
(``features_from_notes``) and from there to semantic ids with the same centroids.

Feature layout (``FEATURE_DIM`` = 28 per frame, each block multiplied by its config weight)::

    [ 0:12]  chroma        12 pitch classes (C, C#, ..., B), log-compressed, unit L2 norm;
                           zeros in silent frames                      x chroma_weight (1.0)
    [12]     onset         spectral-flux onset strength in [0, 1]      x onset_weight  (1.0)
    [13:15]  beat phase    c * (cos, sin) of the phase within the beat of the clip's
                           tempo (one tempo and phase per clip, from the onset
                           envelope); c in [0, 1] is how periodic the onsets are
                                                                       x beat_weight   (0.5)
    [15:27]  pitch class   one-hot pitch class of the dominant pitch, times its voicing
                           v in [0, 1] (0 when no clear pitch)         x pitch_weight  (1.0)
    [27]     height        v * (dominant MIDI pitch - 60) / 12: octaves from middle C
                                                                       x height_weight (0.5)

A weight of 0 drops a block from the distances k-means sees (the block is all zeros).
"""

import math

import attrs

from cadenza.core.hookspecs import hookimpl
from cadenza.core.spec.params import config_for_weights
from cadenza.core.types import SemanticInfo
from cadenza.core.spec.validators import at_least, non_negative

MUSIC_FEATURES = "music-features"

# Feature layout: (start, stop) slices of the last axis, and the single-value columns.
CHROMA = (0, 12)
ONSET = 12
BEAT = (13, 15)
PITCH_CLASS = (15, 27)
HEIGHT = 27
FEATURE_DIM = 28


# -- validators: each message starts with the field name (see cadenza.core.spec.validators).

def _hop_is_integer(instance, attribute, value) -> None:
    hop = instance.sample_rate / value if value > 0 else 0
    if not (value > 0 and hop >= 1 and abs(hop - round(hop)) < 1e-9):
        raise ValueError(
            f"{attribute.name} must divide sample_rate ({instance.sample_rate}) into a whole hop, got {value!r}")


def _window(instance, attribute, value) -> None:
    hop = instance.sample_rate / instance.frame_rate if instance.frame_rate > 0 else 0
    if value < hop:
        raise ValueError(f"{attribute.name} must be >= the hop ({hop:g} samples), got {value!r}")


def _midi_pitch(instance, attribute, value) -> None:
    if not 0 <= value <= 127:
        raise ValueError(f"{attribute.name} must be a MIDI pitch in 0..127, got {value!r}")


def _pitch_max(instance, attribute, value) -> None:
    _midi_pitch(instance, attribute, value)
    if value <= instance.pitch_min:
        raise ValueError(f"{attribute.name} must be above pitch_min ({instance.pitch_min}), got {value!r}")
    nyquist = instance.sample_rate / 2
    if 440.0 * 2 ** ((value - 69) / 12) >= nyquist:
        raise ValueError(f"{attribute.name} must lie below the Nyquist frequency ({nyquist:g} Hz), got {value!r}")


def _weight(instance, attribute, value) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


@attrs.frozen
class MusicFeaturesConfig:
    """Musical features at ``frame_rate`` (one per ``sample_rate / frame_rate`` samples), each
    mapped to the nearest of ``vocab_size`` centroids.

    ``n_fft`` is the window of the chroma and pitch analysis (2048 samples = 128 ms at 16 kHz:
    about a semitone of resolution at 130 Hz), ``onset_n_fft`` the shorter window of the onset
    detector. The dominant pitch is searched over MIDI ``pitch_min`` .. ``pitch_max``. The
    ``*_weight`` fields scale the feature blocks (see the module docstring for the layout).
    """

    sample_rate: int = attrs.field(default=16000, validator=at_least(1000))
    frame_rate: float = attrs.field(default=25.0, validator=_hop_is_integer)
    vocab_size: int = attrs.field(default=128, validator=at_least(2))
    n_fft: int = attrs.field(default=2048, validator=_window)
    onset_n_fft: int = attrs.field(default=1024, validator=_window)
    pitch_min: int = attrs.field(default=36, validator=_midi_pitch)
    pitch_max: int = attrs.field(default=96, validator=_pitch_max)
    chroma_weight: float = attrs.field(default=1.0, validator=_weight)
    onset_weight: float = attrs.field(default=1.0, validator=_weight)
    beat_weight: float = attrs.field(default=0.5, validator=_weight)
    pitch_weight: float = attrs.field(default=1.0, validator=_weight)
    height_weight: float = attrs.field(default=0.5, validator=_weight)
    seed: int = attrs.field(default=0, validator=non_negative)

    @property
    def hop(self) -> int:
        return round(self.sample_rate / self.frame_rate)

    @property
    def feature_dim(self) -> int:
        return FEATURE_DIM

    def info(self) -> SemanticInfo:
        return SemanticInfo(self.sample_rate, float(self.frame_rate), self.vocab_size)

    def describe(self, weights) -> SemanticInfo:
        return config_for_weights(self, weights).info()


@hookimpl
def register_semantic_tokenizers(register):
    register(MUSIC_FEATURES, "cadenza.plugins.music_features.model:build", config=MusicFeaturesConfig,
             description="chroma + onset + beat phase + dominant pitch -> nearest k-means centroid; "
                         "no downloads; random centroids until fitted")
