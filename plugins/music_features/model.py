"""``music-features``: musical features per frame -> nearest k-means centroid (the model).

The config, the registration and the feature layout live in :mod:`.music_features_plugin`.
Every block is computed from plain STFTs, so nothing is downloaded:

* **chroma** - a harmonic pitch-class profile: every peak of the STFT power spectrum
  (window ``n_fft``) between :data:`CHROMA_FMIN` and :data:`CHROMA_FMAX`, its frequency
  refined by parabolic interpolation, adds its power to its pitch class (:func:`pitch_class_energy`).
  The 12 energies are divided by the frame's largest, log-compressed
  (``log(1 + g c) / log(1 + g)``, ``g =`` :data:`CHROMA_GAMMA`) and scaled to unit L2 norm.
  Frames more than :data:`SILENCE_DB` below the clip's loudest frame are silent (all zeros),
  and so is the chroma of a frame with almost no power in the chroma band.
* **onset** - spectral flux: the summed rise of the log-compressed magnitude spectrum
  (window ``onset_n_fft``) over the frame before, max-filtered over :data:`ONSET_MAX_FILTER`
  bins (SuperFlux), divided by the clip's
  :data:`ONSET_QUANTILE` quantile of it (at least :data:`ONSET_FLOOR`, so steady or silent
  audio stays near 0) and capped at 1.
* **beat phase** - one tempo and phase per clip (:func:`cadenza.core.audio.tempo.strongest_beat`):
  the onset envelope (its moving average over a few frames subtracted, negatives cut, then its
  mean removed) is correlated with ``exp(-2 pi i t / P)`` for beat periods ``P`` of 60 to 200
  BPM; the strongest (times a prior around 120 BPM) gives the tempo and, from its angle, where the
  beats fall. Frame ``t`` gets ``c (cos psi_t, sin psi_t)``, ``psi = 0`` on a beat, with
  ``c = |z| / sum(onset)`` in [0, 1]: 1 for perfectly periodic onsets, near 0 without a pulse.
* **dominant pitch** - harmonic-sum salience over the MIDI grid ``pitch_min .. pitch_max``:
  the log-compressed magnitude is pooled to one value ``S`` per semitone, and pitch ``p``
  scores ``H(p) = sum_h HARMONIC_DECAY^(h-1) S[p + 12 log2 h]`` over :data:`HARMONICS`
  harmonics, less :data:`BETWEEN_SCALE` times ``N(p)``, the same sum taken halfway between
  its first :data:`BETWEEN` partials (``(h + 1/2) f0``, normalised so a flat spectrum gives
  ``N = H``): the octave above a true pitch, or noise, has energy there, the true pitch does
  not. Scores are tilted by :data:`PITCH_TILT` per octave up, so a melody above the bass
  tends to win. The best pitch gives the one-hot pitch class and the height ``(p - 60) / 12``,
  both times the voicing ``v``: the harmonicity ``1 - N / H`` mapped from :data:`VOICING` to
  [0, 1], near 0 for noise and silence, 1 for a clear tone.

:meth:`MusicFeatures.features_from_notes` computes the same blocks from MIDI notes: chroma
from each sounding note and its first :data:`NOTE_HARMONICS` partials inside the chroma band (amplitudes
``NOTE_HARMONIC_DECAY^(h-1)``, weighted by the note's overlap with the frame), onset 1 in the
frame where a note starts, the beat phase from that onset envelope by the same estimator, and
the dominant pitch as the highest note covering at least half the frame (voicing 1). So a
melody maps into the space the centroids were fitted in, and :meth:`tokenize_notes` gives
its semantic ids.

Frames are those of ``mel-kmeans``: audio is zero-padded to ``T = ceil(S / hop)`` hops and
frame ``t`` is the window centred on hop ``t`` (time ``t / frame_rate`` to
``(t + 1) / frame_rate``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from cadenza.core.quantize import kmeans
from cadenza.core.audio.io import resample
from cadenza.core.audio.tempo import strongest_beat
from cadenza.core.engine.checkpoint import build_module
from cadenza.core.quantize.centroid_tokenizer import CentroidTokenizer
from cadenza.core.errors import InputError
from cadenza.plugins.music_features import (
    BEAT, CHROMA, FEATURE_DIM, HEIGHT, MUSIC_FEATURES, ONSET, PITCH_CLASS, MusicFeaturesConfig,
)

CHROMA_FMIN = 50.0  # Hz: peaks, not bins, so low notes keep their pitch class
CHROMA_FMAX = 5000.0  # Hz
CHROMA_GAMMA = 10.0  # log compression of the per-frame, max-normalised pitch-class energies
CHROMA_SPREAD = 4 / 3  # semitones: the width of a peak's cos^2 weight over pitch
CHROMA_GATE_DB = 30.0  # chroma needs this share of a frame's power (-30 dB) inside its band
SILENCE_DB = 40.0  # a frame this far below the clip's loudest one is silent (no chroma, no pitch)
MAG_GAMMA = 100.0  # log(1 + g |X| / max |X|): the compressed magnitude of the pitch salience
ONSET_GAMMA = 1000.0  # log(1 + g |X| / max |X|): the compressed magnitude of the onset flux
ONSET_MAX_FILTER = 3  # bins: the previous frame's spectrum is max-filtered over this width
ONSET_QUANTILE = 0.9  # flux at this quantile of the clip (or more) is onset strength 1
ONSET_FLOOR = 5.0  # ... but at least this much flux (compressed-log units): steady audio stays near 0
HARMONICS = 12  # partials summed per candidate pitch
HARMONIC_DECAY = 0.9  # weight of partial h: decay^(h-1)
BETWEEN = 8  # positions (h + 1/2) f0, h = 1 .. 8, whose energy counts against a pitch
BETWEEN_SCALE = 0.5  # how much it counts when choosing the pitch (fully, for the voicing)
PITCH_TILT = 1.25  # salience factor per octave up: favours the melody over the bass
VOICING = (0.2, 0.6)  # harmonicity 1 - N / H: voicing 0 at or below the first, 1 from the second
NOTE_HARMONICS = 6  # partials a MIDI note contributes to its chroma
NOTE_HARMONIC_DECAY = 0.5  # amplitude of a note's h-th partial: decay^(h-1)
REFERENCE_PITCH = 60  # middle C: height 0


def midi_to_hz(pitch: torch.Tensor | float) -> torch.Tensor:
    return 440.0 * 2.0 ** ((torch.as_tensor(pitch, dtype=torch.float64) - 69.0) / 12.0)


def hz_to_midi(hz: torch.Tensor) -> torch.Tensor:
    return 69.0 + 12.0 * torch.log2(hz / 440.0)


def pitch_class_energy(power: torch.Tensor, sample_rate: int, n_fft: int, f_min: float, f_max: float) -> torch.Tensor:
    """Power spectra ``[B, T, F]`` -> pitch-class energies ``[B, T, 12]`` from spectral peaks
    (an HPCP, Gomez 2006): each local maximum between ``f_min`` and ``f_max`` gets its frequency
    refined by a parabola through the log power of it and its neighbours, and adds its power
    to the two nearest semitones' pitch classes with weight ``cos^2(pi d / CHROMA_SPREAD)``
    (``d``: distance in semitones, 0 beyond half the spread). Peaks, not bins: a window's main
    lobe spans semitones at low pitches, so folding every bin would smear a note onto its
    neighbours."""
    log = torch.log(power.clamp(min=1e-20))
    left, mid, right = log[..., :-2], log[..., 1:-1], log[..., 2:]
    bins = torch.arange(1, power.shape[-1] - 1, device=power.device, dtype=power.dtype)
    hz = bins * (sample_rate / n_fft)
    peak = (mid > left) & (mid >= right) & (hz >= f_min) & (hz <= f_max)
    curve = left - 2 * mid + right
    delta = (0.5 * (left - right) / torch.where(curve < 0, curve, -torch.ones_like(curve))).clamp(-0.5, 0.5)
    midi = hz_to_midi(((bins + delta) * (sample_rate / n_fft)).clamp(min=1.0)).to(power.dtype)
    value = power[..., 1:-1] * peak
    lower = torch.floor(midi)
    energy = power.new_zeros(*power.shape[:-1], 12)
    for semitone, distance in ((lower, midi - lower), (lower + 1, lower + 1 - midi)):
        weight = torch.cos(math.pi * distance / CHROMA_SPREAD).pow(2) * (distance < CHROMA_SPREAD / 2)
        energy.scatter_add_(-1, semitone.long() % 12, value * weight)
    return energy


def semitone_bins(n_fft: int, sample_rate: int, low: int, high: int) -> dict[str, torch.Tensor]:
    """How to pool a magnitude spectrum to one value per semitone ``low .. high`` (MIDI).

    A semitone at least a bin wide takes the largest bin within half a semitone of it
    (``index`` ``[M, W]``, rows padded by repeating a bin); a narrower one (low pitches) takes
    the spectrum linearly interpolated at its centre (bins ``lower`` and ``lower + 1``,
    weight ``frac`` on the second). ``narrow`` says which applies; semitones at or above
    Nyquist are not ``valid`` (their value is 0).
    """
    bin_hz = sample_rate / n_fft
    last_bin = n_fft // 2
    rows, lower, frac, narrow, valid = [], [], [], [], []
    for m in range(low, high + 1):
        centre = float(midi_to_hz(m))
        position = min(centre / bin_hz, last_bin)
        first = math.ceil(float(midi_to_hz(m - 0.5)) / bin_hz)
        last = min(math.floor(float(midi_to_hz(m + 0.5)) / bin_hz), last_bin)
        nearest = min(round(position), last_bin)
        rows.append([k for k in range(first, last + 1)] or [nearest])
        lower.append(min(math.floor(position), last_bin - 1))
        frac.append(position - lower[-1])
        narrow.append(float(midi_to_hz(m + 0.5) - midi_to_hz(m - 0.5)) < bin_hz)
        valid.append(centre < sample_rate / 2)
    width = max(len(r) for r in rows)
    return {"index": torch.tensor([r + [r[0]] * (width - len(r)) for r in rows], dtype=torch.long),
            "lower": torch.tensor(lower, dtype=torch.long), "frac": torch.tensor(frac, dtype=torch.float32),
            "narrow": torch.tensor(narrow), "valid": torch.tensor(valid, dtype=torch.float32)}


def compress_chroma(energy: torch.Tensor) -> torch.Tensor:
    """Pitch-class energies ``[..., 12]`` -> chroma: per-frame max-normalised, log-compressed,
    unit L2 norm (all-zero frames stay zero)."""
    peak = energy.amax(-1, keepdim=True)
    rel = energy / peak.clamp(min=1e-20)
    chroma = torch.log1p(CHROMA_GAMMA * rel) / math.log1p(CHROMA_GAMMA)
    chroma = chroma * (peak > 0)
    return F.normalize(chroma, dim=-1)


def beat_phase(onset: torch.Tensor, frame_rate: float) -> torch.Tensor:
    """Onset envelopes ``[B, T]`` -> ``[B, T, 2]``: ``c (cos psi, sin psi)`` of each frame's phase
    within the beat of the row's strongest tempo (see the module docstring)."""
    period, phase, confidence = strongest_beat(onset, frame_rate)
    t = torch.arange(onset.shape[-1], dtype=torch.float64, device=onset.device)
    psi = 2 * math.pi * t[None, :] / period[:, None] + phase[:, None]  # [B, T]: 0 where a beat falls
    return (confidence[:, None, None] * torch.stack([torch.cos(psi), torch.sin(psi)], -1)).to(onset.dtype)


class MusicFeatures(CentroidTokenizer, nn.Module):
    """The ``music-features`` semantic tokenizer. Its state dict is just ``centroids`` ``[vocab, 28]``."""

    component = MUSIC_FEATURES

    def __init__(self, config: MusicFeaturesConfig, centroids: bool = True):
        """``centroids=False``: the feature extractor alone (no state to save), for models that
        read the features themselves, like MuLan's audio tower with ``music_features``."""
        super().__init__()
        self.config = config
        self.info = config.info()
        self.hop = config.hop
        self.frame_rate = float(config.frame_rate)
        weights = torch.ones(FEATURE_DIM)
        weights[slice(*CHROMA)] = config.chroma_weight
        weights[ONSET] = config.onset_weight
        weights[slice(*BEAT)] = config.beat_weight
        weights[slice(*PITCH_CLASS)] = config.pitch_weight
        weights[HEIGHT] = config.height_weight
        self.register_buffer("block_weights", weights, persistent=False)
        if centroids:
            self.register_buffer("centroids", self._random_centroids(config.vocab_size))
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        self.register_buffer("onset_window", torch.hann_window(config.onset_n_fft), persistent=False)
        self.chroma_band = (CHROMA_FMIN, min(CHROMA_FMAX, config.sample_rate / 2))
        self.harmonic_offsets = [round(12 * math.log2(h)) for h in range(1, HARMONICS + 1)]
        self.harmonic_weights = [HARMONIC_DECAY ** (h - 1) for h in range(1, HARMONICS + 1)]
        # Between partials (h + 1/2 times f0): a true f0 leaves them empty; its octave above
        # (or noise) does not. Scaled so that on a flat spectrum they sum to the harmonic sum.
        self.between_offsets = [round(12 * math.log2(h + 0.5)) for h in range(1, BETWEEN + 1)]
        between = [HARMONIC_DECAY ** (h - 0.5) for h in range(1, BETWEEN + 1)]
        self.between_weights = [w * sum(self.harmonic_weights) / sum(between) for w in between]
        pooling = semitone_bins(config.n_fft, config.sample_rate, config.pitch_min,
                                config.pitch_max + self.harmonic_offsets[-1])
        for name, tensor in pooling.items():
            self.register_buffer(f"semitone_{name}", tensor, persistent=False)

    # -- features ----------------------------------------------------------------------------

    def _random_centroids(self, count: int) -> torch.Tensor:
        """Plausible feature vectors drawn from the global RNG (which ``build_module`` seeds):
        peaky chroma, sparse onsets, random beat phases, mostly voiced pitches in range."""
        cfg = self.config
        chroma = F.normalize(torch.rand(count, 12).pow(4), dim=-1)
        onset = torch.rand(count) * (torch.rand(count) < 0.3)
        angle, strength = 2 * math.pi * torch.rand(count), torch.rand(count)
        beat = strength[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
        voiced = (torch.rand(count) < 0.8).float()
        pitch = torch.randint(cfg.pitch_min, cfg.pitch_max + 1, (count,))
        return self._assemble(chroma[None], onset[None], beat[None], pitch[None], voiced[None])[0]

    def _assemble(self, chroma, onset, beat, pitch, voicing) -> torch.Tensor:
        """Blocks ``[B, T, 12]``, ``[B, T]``, ``[B, T, 2]``, ``[B, T]`` (MIDI), ``[B, T]`` -> weighted ``[B, T, 28]``."""
        pitch_class = F.one_hot(pitch.long() % 12, 12).to(chroma.dtype) * voicing[..., None]
        height = voicing * (pitch.to(chroma.dtype) - REFERENCE_PITCH) / 12.0
        out = torch.cat([chroma, onset[..., None], beat, pitch_class, height[..., None]], -1)
        return out * self.block_weights.to(out)

    def _magnitude(self, x: torch.Tensor, n_fft: int, window: torch.Tensor, frames: int,
                   before: int = 0, centred: bool = True) -> torch.Tensor:
        """``|STFT|`` ``[B, before + frames, n_fft // 2 + 1]``: frame ``t`` is the window centred on
        hop ``t`` (``centred``; rendered notes reach full level some ms after they start, so
        this aligns onsets with note starts better) or the window ending where hop ``t`` ends;
        ``before`` extra frames precede frame 0 (over the zero padding)."""
        hop = self.hop
        left = ((n_fft - hop) // 2 if centred else n_fft - hop) + before * hop
        total = (frames + before - 1) * hop + n_fft
        x = F.pad(x, (left, total - left - x.shape[-1]))
        spec = torch.stft(x, n_fft, hop_length=hop, window=window, center=False, return_complex=True)
        return spec.abs().transpose(1, 2)

    def dominant_pitch(self, magnitude: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``|STFT|`` ``[B, T, F]`` (window ``n_fft``) -> (MIDI pitch ``[B, T]`` int64, voicing ``[B, T]``)."""
        ref = magnitude.amax(dim=(1, 2), keepdim=True).clamp(min=1e-8)
        logmag = torch.log1p(MAG_GAMMA * magnitude / ref)
        pooled = logmag[..., self.semitone_index].amax(-1)
        frac = self.semitone_frac
        interpolated = logmag[..., self.semitone_lower] * (1 - frac) + logmag[..., self.semitone_lower + 1] * frac
        semis = torch.where(self.semitone_narrow, interpolated, pooled) * self.semitone_valid  # [B, T, M]
        count = self.config.pitch_max - self.config.pitch_min + 1
        harmonic = sum(w * semis[..., o: o + count] for o, w in zip(self.harmonic_offsets, self.harmonic_weights))
        between = sum(w * semis[..., o: o + count] for o, w in zip(self.between_offsets, self.between_weights))
        tilt = PITCH_TILT ** (torch.arange(count, device=harmonic.device) / 12.0)
        index = ((harmonic - BETWEEN_SCALE * between) * tilt).argmax(-1, keepdim=True)
        at = harmonic.gather(-1, index)[..., 0]
        harmonicity = 1 - between.gather(-1, index)[..., 0] / at.clamp(min=1e-6)
        low, high = VOICING
        voicing = ((harmonicity - low) / (high - low)).clamp(0, 1) * (at > 1e-6)
        return index[..., 0] + self.config.pitch_min, voicing

    def onset_strength(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """Mono audio ``[B, S]`` -> spectral-flux onset strength ``[B, T]`` in [0, 1]."""
        magnitude = self._magnitude(x, self.config.onset_n_fft, self.onset_window, frames, before=1)
        ref = magnitude.amax(dim=(1, 2), keepdim=True).clamp(min=1e-8)
        logmag = torch.log1p(ONSET_GAMMA * magnitude / ref)
        # SuperFlux (Boeck & Widmer 2013): rises are measured against the previous frame's
        # maximum over neighbouring bins, so vibrato and a window's smearing do not count.
        previous = F.max_pool1d(logmag[:, :-1], ONSET_MAX_FILTER, 1, ONSET_MAX_FILTER // 2)
        flux = (logmag[:, 1:] - previous).clamp(min=0).sum(-1)
        scale = torch.quantile(flux, ONSET_QUANTILE, dim=-1, keepdim=True).clamp(min=ONSET_FLOOR)
        return (flux / scale).clamp(max=1)

    def features(self, audio: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """``[B, C, S]`` -> ``[B, T, 28]`` with ``T = ceil(S / hop)`` (layout: see
        :mod:`.music_features_plugin`). ``sample_rate`` (default: the tokenizer's own) lets
        ``cadenza fit-kmeans`` pass audio at any rate; it is resampled first. Channels are averaged."""
        if audio.dim() != 3:
            raise InputError(f"music-features takes audio [batch, channels, samples], got shape {tuple(audio.shape)}")
        if sample_rate is not None:
            audio = resample(audio, sample_rate, self.config.sample_rate)
        x = audio.float().mean(dim=1)
        frames = -(-x.shape[-1] // self.hop)
        if frames == 0:
            return x.new_zeros(x.shape[0], 0, FEATURE_DIM)
        magnitude = self._magnitude(x, self.config.n_fft, self.window, frames)
        power = magnitude.pow(2)
        energy = pitch_class_energy(power, self.config.sample_rate, self.config.n_fft, *self.chroma_band)
        loudness = power[..., 1:].sum(-1)
        floor = loudness.amax(-1, keepdim=True) * 10 ** (-SILENCE_DB / 10)
        active = ((loudness > floor) & (loudness > 1e-10)).to(energy.dtype)
        # Only sidelobes of lower sounds in the chroma band: no chroma (the pitch block may still have one).
        tonal = energy.sum(-1) > loudness * 10 ** (-CHROMA_GATE_DB / 10)
        chroma = compress_chroma(energy) * (active * tonal)[..., None]
        pitch, voicing = self.dominant_pitch(magnitude)
        onset = self.onset_strength(x, frames)
        return self._assemble(chroma, onset, beat_phase(onset, self.frame_rate), pitch, voicing * active)

    def frames_for(self, seconds: float) -> int:
        """Frames ``features`` gives for ``seconds`` of audio at the tokenizer's sample rate."""
        return -(-round(seconds * self.config.sample_rate) // self.hop)

    def features_from_notes(self, notes: Sequence[Sequence[float]], seconds: float) -> torch.Tensor:
        """The features ``[T, 28]`` a MIDI melody implies (``T = frames_for(seconds)``).

        ``notes``: ``(start_s, end_s, midi_pitch)`` or ``(start_s, end_s, midi_pitch, velocity)``
        tuples; they may overlap (chords). See the module docstring for how each block is
        derived; the dominant pitch is moved by octaves into ``pitch_min .. pitch_max``, the
        range the audio search covers.
        """
        cfg = self.config
        frames = self.frames_for(seconds)
        device = self.centroids.device
        energy = torch.zeros(frames, 12, dtype=torch.float64)
        onset = torch.zeros(frames, dtype=torch.float64)
        top = torch.full((frames,), -1, dtype=torch.long)
        edges = torch.arange(frames + 1, dtype=torch.float64) / self.frame_rate
        for i, note in enumerate(notes):
            if len(note) not in (3, 4):
                raise InputError(f"note {i}: expected (start_s, end_s, midi_pitch[, velocity]), got {tuple(note)!r}")
            start, end, pitch = float(note[0]), float(note[1]), note[2]
            velocity = float(note[3]) if len(note) == 4 else 100.0
            if int(pitch) != pitch or not 0 <= pitch <= 127:
                raise InputError(f"note {i}: midi_pitch must be an integer in 0..127, got {pitch!r}")
            if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
                raise InputError(f"note {i}: needs 0 <= start_s < end_s, got ({start!r}, {end!r})")
            pitch = int(pitch)
            overlap = ((torch.minimum(edges[1:], torch.tensor(end)) - torch.maximum(edges[:-1], torch.tensor(start)))
                       * self.frame_rate).clamp(0, 1)
            amplitude = max(velocity, 0.0) / 127.0
            for h in range(1, NOTE_HARMONICS + 1):
                if not self.chroma_band[0] <= h * float(midi_to_hz(pitch)) <= self.chroma_band[1]:
                    continue  # the audio's chroma does not see it either
                pc = (pitch + round(12 * math.log2(h))) % 12
                energy[:, pc] += overlap * (amplitude * NOTE_HARMONIC_DECAY ** (h - 1)) ** 2
            first = math.floor(start * self.frame_rate)
            if first < frames:
                onset[first] = 1.0
            covers = overlap >= 0.5
            top[covers] = torch.clamp(top[covers], min=pitch)
        voicing = (top >= 0).double()
        pitch = top.clamp(min=0)
        pitch = torch.where(pitch < cfg.pitch_min, pitch + 12 * ((cfg.pitch_min - pitch + 11) // 12), pitch)
        pitch = torch.where(pitch > cfg.pitch_max, pitch - 12 * ((pitch - cfg.pitch_max + 11) // 12), pitch)
        chroma = compress_chroma(energy)
        onset = onset.float()[None]
        out = self._assemble(chroma.float()[None], onset, beat_phase(onset, self.frame_rate), pitch[None],
                             voicing.float()[None])
        return out[0].to(device)

    # -- tokens ------------------------------------------------------------------------------

    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """``[..., 28]`` -> nearest centroid ids ``[...]`` (squared Euclidean distance)."""
        return kmeans.assign(features, self.centroids)

    @torch.no_grad()
    def token_onsets(self) -> torch.Tensor:
        """``[V]``: each token's onset strength in [0, 1] (its centroid's onset block), which lets
        long-form generation hold a beat (:mod:`cadenza.core.steering.beat_grid`)."""
        weight = self.config.onset_weight
        onsets = self.centroids[:, ONSET] / weight if weight > 0 else torch.zeros_like(self.centroids[:, ONSET])
        return onsets.clamp(0, 1)

    def tokenize(self, audio: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """``[B, C, S]`` -> ``[B, T]`` int64 ids < vocab_size."""
        return self.assign(self.features(audio, sample_rate))

    @torch.no_grad()
    def tokenize_notes(self, notes: Sequence[Sequence[float]], seconds: float) -> torch.Tensor:
        """A MIDI melody (see :meth:`features_from_notes`) -> its semantic ids ``[T]`` int64."""
        return self.assign(self.features_from_notes(notes, seconds))


def build(config: MusicFeaturesConfig, context) -> MusicFeatures:
    return build_module(MusicFeatures, config, context, MUSIC_FEATURES)
