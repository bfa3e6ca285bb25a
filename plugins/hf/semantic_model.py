"""The ``hubert`` and ``w2v-bert`` semantic tokenizers (imported only when a spec builds one).

``features`` runs the model up to the configured layer only: the layers above it are dropped
after loading (they cannot change that layer's output), and the layer's output is captured
with a forward hook, which is the raw layer output even in models that add a final layer
norm after the last layer. ``tokenize`` maps each frame to its nearest centroid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from cadenza.core.quantize import kmeans
from cadenza.core.audio.io import resample
from cadenza.core.errors import InputError, WeightsError
from cadenza.core.types import SemanticInfo
from cadenza.plugins.hf.hub import load_pretrained, local_folder
from cadenza.plugins.hf.semantic import (FRAME_RATE, HUBERT, SAMPLE_RATE, W2V_BERT, HubertSemanticConfig,
                                         W2VBertSemanticConfig)


def load_centroids(path: str | Path, vocab_size: int, dim: int, name: str) -> torch.Tensor:
    """``centroids`` ``[vocab_size, dim]`` from a ``cadenza fit-kmeans`` file, checked."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        centroids = load_file(str(path))["centroids"]
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise WeightsError(f"{name}: kmeans file {str(path)!r} is not a safetensors file with 'centroids' "
                           f"({type(exc).__name__}: {exc})") from None
    if tuple(centroids.shape) != (vocab_size, dim):
        raise WeightsError(f"{name}: kmeans file {str(path)!r} holds centroids {tuple(centroids.shape)}, "
                           f"the tokenizer needs [vocab_size={vocab_size}, hidden={dim}]")
    return centroids.float()


class HFSemanticTokenizer(nn.Module):
    """Layer features of a speech model -> nearest centroid. Subclasses implement ``_inputs``."""

    name = ""
    min_samples = 400  # one 25 ms analysis window at 16 kHz

    def __init__(self, config: Any, model: nn.Module, layer: int, centroids: torch.Tensor, extractor: Any = None):
        super().__init__()
        self.config = config
        self.layer = layer
        self.info = SemanticInfo(SAMPLE_RATE, FRAME_RATE, int(centroids.shape[0]))
        self.extractor = extractor
        self.feature_dim = int(model.config.hidden_size)
        model.encoder.layers = model.encoder.layers[:layer]  # nothing above `layer` is needed
        self.model = model.eval().requires_grad_(False)
        self._captured: list[torch.Tensor] = []
        self.model.encoder.layers[layer - 1].register_forward_hook(self._capture)
        self.register_buffer("centroids", centroids)

    def _capture(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self._captured.append(output[0] if isinstance(output, tuple) else output)

    @property
    def device(self) -> torch.device:
        return self.centroids.device

    @torch.no_grad()
    def features(self, audio: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """``[B, C, S]`` audio (at ``sample_rate``, default 16 kHz) -> layer features ``[B, T, D]``, 50 Hz.

        Channels are averaged to mono. Audio shorter than one analysis window gives ``T = 0``.
        """
        if audio.dim() != 3:
            raise InputError(f"{self.name} takes audio [batch, channels, samples], got shape {tuple(audio.shape)}")
        if sample_rate is not None:
            audio = resample(audio, sample_rate, SAMPLE_RATE)
        mono = audio.float().mean(dim=1)
        if mono.shape[-1] < self.min_samples:
            return mono.new_zeros(mono.shape[0], 0, self.feature_dim)
        self._captured.clear()
        try:
            self.model(**self._inputs(mono))
            return self._captured[-1].float()
        finally:
            self._captured.clear()

    def _inputs(self, mono: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def tokenize(self, audio: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """``[B, C, S]`` at 16 kHz (or ``sample_rate``) -> ids ``[B, T]`` int64 < vocab_size."""
        return kmeans.assign(self.features(audio, sample_rate), self.centroids)


class HubertTokenizer(HFSemanticTokenizer):
    """``hubert``: raw 16 kHz waveform in (optionally normalised per clip, as its feature extractor)."""

    name = HUBERT

    def __init__(self, *args: Any, normalize: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.normalize = normalize

    def _inputs(self, mono: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.normalize:  # Wav2Vec2FeatureExtractor's zero-mean unit-variance normalisation
            mono = (mono - mono.mean(-1, keepdim=True)) / torch.sqrt(mono.var(-1, keepdim=True, unbiased=False) + 1e-7)
        return {"input_values": mono.to(self.device)}


class W2VBertTokenizer(HFSemanticTokenizer):
    """``w2v-bert``: SeamlessM4T's feature extractor (80-bin fbank every 10 ms, pairs stacked -> 50 Hz)."""

    name = W2V_BERT
    min_samples = 560  # two fbank frames: one stacked pair, with a defined per-clip variance

    def _inputs(self, mono: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = self.extractor([row.cpu().numpy() for row in mono], sampling_rate=SAMPLE_RATE,
                               return_tensors="pt", return_attention_mask=True)
        return {k: v.to(self.device) for k, v in batch.items()}


def _random_centroids(config: Any, dim: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(config.seed)
    return torch.randn(config.vocab_size, dim, generator=generator)


def _centroids(config: Any, dim: int, name: str) -> torch.Tensor:
    if config.kmeans == "random":
        return _random_centroids(config, dim)
    return load_centroids(config.kmeans, config.vocab_size, dim, name)


def _check_layer(name: str, layer: int, model: nn.Module, weights: Any) -> None:
    layers = len(model.encoder.layers)
    if layer > layers:
        raise WeightsError(f"{name}: params.layer {layer} is beyond the {layers} layers of {weights.source!r}")


def _random_model(config: Any, make: Any) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return make()


def build_hubert(config: HubertSemanticConfig, context) -> HubertTokenizer:
    import json

    from transformers import HubertConfig, HubertModel

    layer = config.check(context.weights, config.architecture(context.weights))
    normalize = False  # fairseq's hubert-base was trained on raw waveforms
    if context.weights.is_random:
        hf = HubertConfig(hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
                          num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
                          conv_dim=(config.conv_dim,) * 7, num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=_groups(config.hidden_size))
        model = _random_model(config, lambda: HubertModel(hf))
    else:
        folder = local_folder(context.weights, HUBERT)
        model = load_pretrained(HUBERT, folder, HubertModel.from_pretrained)
        _check_layer(HUBERT, layer, model, context.weights)
        preprocessor = folder / "preprocessor_config.json"
        if preprocessor.exists():
            normalize = bool(json.loads(preprocessor.read_text()).get("do_normalize", False))
    centroids = _centroids(config, int(model.config.hidden_size), HUBERT)
    tokenizer = HubertTokenizer(config, model, layer, centroids, normalize=normalize)
    return tokenizer.to(context.device).eval()


def build_w2v_bert(config: W2VBertSemanticConfig, context) -> W2VBertTokenizer:
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    layer = config.check(context.weights, config.architecture(context.weights))
    if context.weights.is_random:
        extractor = SeamlessM4TFeatureExtractor()  # w2v-bert-2.0's own settings: 80 mels, stride 2
        hf = Wav2Vec2BertConfig(hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
                                num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
                                output_hidden_size=config.hidden_size,
                                feature_projection_input_dim=extractor.feature_size * extractor.stride,
                                conv_depthwise_kernel_size=5, left_max_position_embeddings=64,
                                right_max_position_embeddings=8)
        model = _random_model(config, lambda: Wav2Vec2BertModel(hf))
    else:
        folder = local_folder(context.weights, W2V_BERT)
        extractor = load_pretrained(W2V_BERT, folder, SeamlessM4TFeatureExtractor.from_pretrained)
        model = load_pretrained(W2V_BERT, folder, Wav2Vec2BertModel.from_pretrained)
        _check_layer(W2V_BERT, layer, model, context.weights)
    centroids = _centroids(config, int(model.config.hidden_size), W2V_BERT)
    tokenizer = W2VBertTokenizer(config, model, layer, centroids, extractor=extractor)
    return tokenizer.to(context.device).eval()


def _groups(hidden: int) -> int:
    """Groups of HuBERT's positional convolution: the largest of 16, 8, ... that divides ``hidden``."""
    return next(g for g in (16, 8, 4, 2, 1) if hidden % g == 0)
