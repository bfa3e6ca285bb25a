"""``spectral-codec``: log-magnitude spectra, a k-means residual VQ, and Griffin-Lim phase recovery.

Why this shape: a neural codec makes noise until it is trained for days, but a spectral codec
is useful as soon as its codebooks are fitted, and k-means fitting takes minutes on a CPU. The
cascade only needs discrete tokens that decode to recognisable music, and the attributes a
prompt asks for (tempo, key, register, loudness, drums) live in the magnitude spectrum.

Frames. Audio (mono) is zero-padded to ``T = ceil(S / hop)`` hops. An STFT with hop
``hop / subframes`` and ``center=True`` gives ``T * subframes + 1`` frames; the last (centred
on the padded end) is dropped, so token frame ``t`` holds the ``subframes`` spectra centred at
``t * hop + i * hop / subframes``. Each spectrum is reduced to ``bins`` log magnitudes (mel:
the filter-weighted mean magnitude in each band; linear: the STFT bins as they are), and the
``subframes`` spectra of a frame are stacked into one ``dim``-wide vector. A decode is exactly
``T * hop`` samples long.

Quantisation. Residual VQ: codebook ``q`` holds the nearest codeword to what codebooks
``0..q-1`` left over, so the first codebooks carry the coarse spectral envelope and loudness,
the later ones detail (the coarse stage of a cascade predicts the first, the fine stage the rest).
With ``groups`` G > 1 the frame vector is cut into G bands of bins (each band taken from every
subframe) and each band has its own residual VQ: codebook ``q`` codes band ``q % G`` at level
``q // G`` (:meth:`SpectralCodec.bands`, :meth:`SpectralCodec.interleave`).

Decoding. The sum of the chosen codewords is a log-magnitude spectrogram; mel bands are spread
back over the linear bins by the same triangular filters (linear interpolation between band
centres), and the phase is recovered by the fast Griffin-Lim algorithm (Perraudin et al. 2013:
Griffin-Lim with an inertial step, ``momentum``), from a seeded random initial phase so that a
decode is deterministic. It is written with ``torch.stft``/``istft`` (a few lines), as torchaudio
is not a dependency of the core install.
"""

from __future__ import annotations

import json
import math

import attrs
import torch
from torch import nn

from cadenza.core.quantize import kmeans
from cadenza.core.files.atomic import atomic_path
from cadenza.core.audio.io import resample
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.spec.params import unstructure_config
from cadenza.core.audio.dsp import mel_filterbank
from cadenza.plugins.spectral_codec import SPECTRAL_CODEC, SpectralCodecConfig, weights_file
from cadenza.plugins.spectral_codec import hifigan

FLOOR = 1e-5  # magnitude floor before the log (-100 dB re full scale): silence is one finite value
LOG_FLOOR, LOG_CEILING = math.log(FLOOR), math.log(10.0)
HIFIGAN_FMAX = 8000.0  # the universal HiFi-GAN's mel range: 0-8 kHz
HIFIGAN_LOG_CEILING = math.log(1000.0)  # its mels are not normalised by the window: a full-scale tone is near e^3
RANDOM_MEAN, RANDOM_STD = -6.0, 2.0  # random codebooks: first codebook near typical log magnitudes


class SpectralCodec(nn.Module):
    """The tokenizer: ``encode`` ``[B, C, S]`` -> ``[B, Q, ceil(S / hop)]``; ``decode`` -> ``[B, 1, T * hop]``."""

    def __init__(self, config: SpectralCodecConfig, codebooks: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        self.info = config.info()
        self.hop = config.hop
        shape = (config.num_codebooks, config.codebook_size, config.band_dim)
        if codebooks is None:
            gen = torch.Generator().manual_seed(config.seed)
            codebooks = torch.randn(shape, generator=gen) * RANDOM_STD / torch.arange(1, shape[0] + 1)[:, None, None]
            codebooks[0] += RANDOM_MEAN
        if tuple(codebooks.shape) != shape:
            raise WeightsError(f"spectral-codec codebooks must be {list(shape)} for this config, "
                               f"got {list(codebooks.shape)}")
        self.register_buffer("codebooks", codebooks.float().contiguous())
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        # |STFT| per unit of window (a full-scale sine peaks near 0.5), or as HiFi-GAN was trained on it
        self.magnitude_scale = 1.0 if config.vocoder == "hifigan" else float(self.window.sum())
        if config.vocoder == "hifigan":  # HiFi-GAN's mels: slaney filters to 8 kHz, areas normalised
            analysis = mel_filterbank(config.n_fft // 2 + 1, config.n_mels, config.sample_rate, 0.0,
                                      HIFIGAN_FMAX, scale="slaney", norm="slaney")
            synthesis = None  # the vocoder voices the mels themselves
        elif config.scale == "mel":
            fb = mel_filterbank(config.n_fft // 2 + 1, config.n_mels, config.sample_rate)  # [F, M], peaks 1
            analysis = fb / fb.sum(0).clamp(min=1e-8)  # weighted mean magnitude within each band
            synthesis = (fb / fb.sum(1, keepdim=True).clamp(min=1e-8)).T  # [M, F]: interpolate between centres
        else:
            analysis = synthesis = None
        self.register_buffer("analysis", analysis, persistent=False)
        self.register_buffer("synthesis", synthesis, persistent=False)

    # -- analysis ---------------------------------------------------------------------------------

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        return torch.stft(x, c.n_fft, hop_length=c.stft_hop, window=self.window, center=True, pad_mode="constant",
                          return_complex=True)

    def features(self, audio: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """``[B, C, S]`` -> the vectors the codebooks quantise, ``[B, ceil(S / hop), dim]``.

        ``sample_rate`` (default: the codec's) lets ``cadenza fit-kmeans`` pass audio at any rate.
        """
        if audio.dim() != 3:
            raise InputError(f"spectral-codec encodes audio [batch, channels, samples], got shape {tuple(audio.shape)}")
        c = self.config
        if sample_rate is not None:
            audio = resample(audio, sample_rate, c.sample_rate)
        x = audio.float().mean(dim=1)
        frames = -(-x.shape[-1] // self.hop)
        if frames == 0:
            return x.new_zeros(x.shape[0], 0, c.dim)
        x = torch.nn.functional.pad(x, (0, frames * self.hop - x.shape[-1]))
        mag = self._stft(x).abs()[..., : frames * c.subframes] / self.magnitude_scale  # [B, F, N]
        spec = mag.transpose(1, 2)  # [B, N, F]
        if self.analysis is not None:
            spec = spec @ self.analysis
        return spec.clamp(min=FLOOR).log().reshape(x.shape[0], frames, c.dim)

    def bands(self, values: torch.Tensor) -> torch.Tensor:
        """Frame vectors ``[..., dim]`` -> ``[..., groups, band_dim]``: band ``g`` of every subframe, side by side."""
        c = self.config
        lead = values.shape[:-1]
        split = values.reshape(*lead, c.subframes, c.groups, c.bins // c.groups).transpose(-3, -2)
        return split.reshape(*lead, c.groups, c.band_dim)

    def unbands(self, bands: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`bands`: ``[..., groups, band_dim]`` -> ``[..., dim]``."""
        c = self.config
        lead = bands.shape[:-2]
        split = bands.reshape(*lead, c.groups, c.subframes, c.bins // c.groups).transpose(-3, -2)
        return split.reshape(*lead, c.dim)

    def interleave(self, books: torch.Tensor) -> torch.Tensor:
        """Per-band residual codebooks ``[groups, levels, K, band_dim]`` -> this codec's order ``[Q, K, band_dim]``
        (codebook ``q`` = band ``q % groups``, level ``q // groups``)."""
        return books.transpose(0, 1).reshape(-1, *books.shape[2:])

    def quantize(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, T, dim]`` -> codes ``[B, Q, T]``, codebook by codebook on its band's residual."""
        groups = self.config.groups
        residual, codes = self.bands(features).clone(), []
        for q, book in enumerate(self.codebooks):
            index = kmeans.assign(residual[..., q % groups, :], book)
            codes.append(index)
            residual[..., q % groups, :] -= book[index]
        return torch.stack(codes, dim=1)

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        return self.quantize(self.features(audio))

    # -- synthesis --------------------------------------------------------------------------------

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, Q', T]`` (``Q' <= Q``: the first codebooks only) -> summed codewords ``[B, T, dim]``.

        A band none of the first ``Q'`` codebooks codes (``Q' < groups``) decodes as silence."""
        c = self.config
        out = self.codebooks.new_zeros(codes.shape[0], codes.shape[2], c.groups, c.band_dim)
        for q in range(codes.shape[1]):
            out[..., q % c.groups, :] += self.codebooks[q][codes[:, q]]
        out[..., codes.shape[1]:, :] = LOG_FLOOR
        return self.unbands(out)

    def magnitudes(self, values: torch.Tensor) -> torch.Tensor:
        """Frame vectors ``[B, T, dim]`` -> linear-frequency magnitudes ``[B, n_fft // 2 + 1, T * subframes]``."""
        c = self.config
        # Clamped to [floor, +20 dB re full scale]: codes a stage model generates may sum to any value,
        # and magnitudes far below the floor would also make the FFTs crawl through subnormal floats.
        spec = values.reshape(values.shape[0], -1, c.bins).clamp(min=LOG_FLOOR, max=LOG_CEILING).exp()
        if self.synthesis is not None:
            spec = spec @ self.synthesis
        return (spec * self.window.sum()).transpose(1, 2)

    @torch.no_grad()
    def synthesize(self, values: torch.Tensor) -> torch.Tensor:
        """Frame vectors ``[B, T, dim]`` (decoded codes, or unquantised :meth:`features`) -> audio ``[B, 1, T * hop]``."""
        length = values.shape[1] * self.hop
        if length == 0:
            return values.new_zeros(values.shape[0], 1, 0)
        if self.config.vocoder == "hifigan":
            mels = values.reshape(values.shape[0], -1, self.config.bins).clamp(min=LOG_FLOOR, max=HIFIGAN_LOG_CEILING)
            return hifigan.vocode(mels)
        return self.griffin_lim(self.magnitudes(values), length)[:, None]

    def griffin_lim(self, mag: torch.Tensor, length: int) -> torch.Tensor:
        """Fast Griffin-Lim: ``[B, F, N]`` magnitudes of frames ``0..N-1`` -> ``[B, length]`` audio."""
        c = self.config
        mag = torch.cat([mag, mag[..., -1:]], dim=-1)  # istft(center=True) wants the frame at the end too
        gen = torch.Generator().manual_seed(c.seed)
        phase = torch.polar(torch.ones(mag.shape), torch.rand(mag.shape, generator=gen) * 2 * torch.pi)
        spec = mag * phase.to(mag.device)
        previous = None

        def istft(s: torch.Tensor) -> torch.Tensor:
            return torch.istft(s, c.n_fft, hop_length=c.stft_hop, window=self.window, center=True, length=length)

        for _ in range(c.griffin_lim_iters):
            rebuilt = self._stft(istft(spec))
            step = rebuilt if previous is None else rebuilt + c.momentum * (rebuilt - previous)
            previous = rebuilt
            spec = mag * step / step.abs().clamp(min=1e-12)
        return istft(spec)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        q, k = self.config.num_codebooks, self.config.codebook_size
        if codes.dim() != 3 or codes.shape[1] != q:
            raise InputError(f"spectral-codec decodes codes [batch, {q}, frames], got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
            raise InputError(f"spectral-codec codes must be in [0, {k}), got {int(codes.min())}..{int(codes.max())}")
        return self.synthesize(self.dequantize(codes.long()))

    # -- weights ----------------------------------------------------------------------------------

    def with_codebooks(self, codebooks: torch.Tensor) -> SpectralCodec:
        """The same codec with other codebooks ``[Q, K, band_dim]`` (``cadenza fit-kmeans`` fits them)."""
        config = attrs.evolve(self.config, num_codebooks=codebooks.shape[0], codebook_size=codebooks.shape[1])
        return SpectralCodec(config, codebooks.detach().cpu()).to(self.codebooks.device)

    def save_pretrained(self, path, **metadata: str):
        """Write the codebooks and the config as one safetensors file, atomically.

        Codewords are stored as float16: half the size, and its step (under 0.01 for log
        magnitudes below 16) is far finer than the quantisation error the codebooks leave.
        """
        from safetensors.torch import save_file

        meta = {**metadata, "component": SPECTRAL_CODEC, "config": json.dumps(unstructure_config(self.config))}
        with atomic_path(path) as tmp:
            save_file({"codebooks": self.codebooks.detach().cpu().half().contiguous()}, str(tmp), metadata=meta)
        return path


def load_codebooks(path) -> torch.Tensor:
    """The ``codebooks`` tensor of a codebook file; a one-line WeightsError naming the file otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    if set(state) != {"codebooks"}:
        raise WeightsError(f"{path}: expected one tensor 'codebooks', found {sorted(state)}")
    return state["codebooks"]


def build(config: SpectralCodecConfig, context) -> SpectralCodec:
    path = weights_file(context.weights)
    if path is None:
        return SpectralCodec(config).to(context.device).eval()
    resolved = config.resolved(context.weights)
    try:
        codec = SpectralCodec(resolved, load_codebooks(path))
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    return codec.to(context.device).eval()
