"""``tiny-codec``: a small SoundStream/EnCodec-style neural codec (conv encoder, RVQ, conv decoder).

Frame alignment is exact by construction: a downsampling conv with kernel ``2*s``, stride
``s`` and padding ``ceil(s/2)`` maps ``n*s`` samples to ``n`` frames, and the mirrored
transposed conv (``output_padding = 2*padding - s``) maps ``n`` frames back to ``n*s``
samples. So ``frames = ceil(samples / hop)`` (audio is zero-padded to a whole hop) and a
decode is exactly ``frames * hop`` samples long, which the cascade relies on to trim audio.

With random weights it encodes and decodes with the right shapes but the audio is noise;
it exists to exercise and train the whole pipeline without downloads.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from cadenza.core.errors import InputError
from cadenza.core.engine.checkpoint import build_module, save_module
from cadenza.plugins.tiny import TINY_CODEC, TinyCodecConfig


class _ResidualUnit(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.elu(self.conv1(F.elu(x))))


def _widths(config: TinyCodecConfig) -> list[int]:
    """Channel width before each downsampling block and after the last (doubling, as SoundStream)."""
    return [config.channels * 2**i for i in range(len(config.strides) + 1)]


class _Encoder(nn.Module):
    def __init__(self, config: TinyCodecConfig):
        super().__init__()
        widths = _widths(config)
        layers: list[nn.Module] = [nn.Conv1d(1, widths[0], 7, padding=3)]
        for i, s in enumerate(config.strides):
            layers += [
                _ResidualUnit(widths[i]),
                nn.ELU(),
                nn.Conv1d(widths[i], widths[i + 1], 2 * s, stride=s, padding=math.ceil(s / 2)),
            ]
        layers += [nn.ELU(), nn.Conv1d(widths[-1], config.latent_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Decoder(nn.Module):
    def __init__(self, config: TinyCodecConfig):
        super().__init__()
        widths = _widths(config)
        layers: list[nn.Module] = [nn.Conv1d(config.latent_dim, widths[-1], 7, padding=3)]
        for i in reversed(range(len(config.strides))):
            s, p = config.strides[i], math.ceil(config.strides[i] / 2)
            layers += [
                nn.ELU(),
                nn.ConvTranspose1d(widths[i + 1], widths[i], 2 * s, stride=s, padding=p, output_padding=2 * p - s),
                _ResidualUnit(widths[i]),
            ]
        layers += [nn.ELU(), nn.Conv1d(widths[0], 1, 7, padding=3), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ResidualVQ(nn.Module):
    """``num_codebooks`` codebooks; each quantises what the previous ones left over.

    Encoding picks the nearest codeword (squared Euclidean) stage by stage; decoding sums the
    chosen codewords, so dropping the last codebooks gives a coarser reconstruction.
    """

    def __init__(self, num_codebooks: int, codebook_size: int, dim: int):
        super().__init__()
        # Small codewords, near the scale of a freshly initialised encoder's latents, so that a
        # random codec's codes still vary with the audio instead of all picking one codeword.
        self.codebooks = nn.Parameter(torch.randn(num_codebooks, codebook_size, dim) * 0.1)

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, Q, T]`` int64."""
        residual, codes = z, []
        for book in self.codebooks:
            dist = residual.pow(2).sum(-1, keepdim=True) - 2 * residual @ book.T + book.pow(2).sum(-1)
            index = dist.argmin(-1)
            codes.append(index)
            residual = residual - book[index]
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, Q, T]`` -> ``[B, T, D]``: the sum of the chosen codewords."""
        return sum(book[codes[:, q]] for q, book in enumerate(self.codebooks))


class TinyCodec(nn.Module):
    """The ``tiny-codec`` tokenizer: ``encode`` ``[B, C, S]`` -> ``[B, Q, T]``; ``decode`` -> ``[B, 1, T*hop]``."""

    def __init__(self, config: TinyCodecConfig):
        super().__init__()
        self.config = config
        self.info = config.info()
        self.hop = config.hop
        self.encoder = _Encoder(config)
        self.quantizer = ResidualVQ(config.num_codebooks, config.codebook_size, config.latent_dim)
        self.decoder = _Decoder(config)

    def encode_latent(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, C, S]`` -> continuous latents ``[B, T, D]`` (mono, padded to a whole hop)."""
        if audio.dim() != 3:
            raise InputError(f"tiny-codec encodes audio [batch, channels, samples], got shape {tuple(audio.shape)}")
        x = audio.float().mean(dim=1, keepdim=True)
        x = F.pad(x, (0, -x.shape[-1] % self.hop))
        return self.encoder(x).transpose(1, 2)

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        return self.quantizer.encode(self.encode_latent(audio))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        q, k = self.config.num_codebooks, self.config.codebook_size
        if codes.dim() != 3 or codes.shape[1] != q:
            raise InputError(f"tiny-codec decodes codes [batch, {q}, frames], got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
            raise InputError(f"tiny-codec codes must be in [0, {k}), got {int(codes.min())}..{int(codes.max())}")
        z = self.quantizer.decode(codes.long())
        return self.decoder(z.transpose(1, 2))

    def save_pretrained(self, folder):
        return save_module(self, folder, TINY_CODEC)


def build(config: TinyCodecConfig, context) -> TinyCodec:
    return build_module(TinyCodec, config, context, TINY_CODEC)
