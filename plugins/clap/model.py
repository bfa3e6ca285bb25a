"""The ``clap`` conditioner: LAION-CLAP's own model code, loaded without ``import laion_clap``.

``import laion_clap`` fails offline: its ``training/data.py`` downloads three tokenizers at
import time. Its model code is the folder ``laion_clap/clap_module``, which laion_clap itself
puts on ``sys.path`` and imports as the top-level package ``clap_module``; :func:`clap_module`
does the same after locating the folder with ``importlib.util.find_spec`` (which does not run
``laion_clap/__init__.py``). The model is then built by its own ``CLAP`` class from its own
model config dicts, so published checkpoints load key for key.

Two construction hooks are swapped in while ``CLAP(...)`` runs (:func:`_patched`):
``RobertaModel`` -- CLAP's constructor calls ``RobertaModel.from_pretrained('roberta-base')``,
a 500 MB download whose weights a checkpoint overwrites anyway; we build the same architecture
from its config instead. ``create_htsat_model`` -- HTSAT sizes are hard-coded per model name,
so the ``htsat_*`` overrides (a small real HTSAT for tests) need their own factory.

Audio (:meth:`Clap.embed_audio`): resampled to the model's rate (48 kHz) and mono, rounded to
16-bit as LAION's inference does, then the waveform goes in and the model computes its mel
itself. Clips shorter than the model's clip (10 s) are repeated and zero-padded, LAION's
``repeatpad``. Longer ones: non-fusion models embed evenly spaced windows covering the whole
clip and average them (LAION crops one random window; we want deterministic, whole-clip
embeddings); fusion models get LAION's fusion input (global mel squeezed to one clip plus
three local chunks), with the chunks taken from the middle of their thirds instead of at random.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import math
import sys
import threading
import types
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cadenza.core.audio.io import prepare
from cadenza.core.engine.checkpoint import build_module, load_state_into, save_module
from cadenza.core.errors import CadenzaError, WeightsError
from cadenza.core.spec.params import config_for_weights
from cadenza.core.types import Conditioning
from cadenza.core.engine.weights import network_allowed, load_failure_reason
from cadenza.plugins.clap import CLAP, ClapConfig, check_checkpoint, htsat_sizes, is_laion_checkpoint
from cadenza.core.audio.dsp import mel_filterbank
from cadenza.core.prompts import check_prompts
from cadenza.plugins.mulan.model import check_audio

# roberta-base's config.json: the architecture of the published checkpoints' text tower.
ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                    attention_probs_dropout_prob=0.1, max_position_embeddings=514, type_vocab_size=1,
                    initializer_range=0.02, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
ROBERTA_TOKENIZER = "roberta-base"
ROBERTA_MAX_LENGTH = 77  # what laion_clap's CLAP_Module.tokenizer pads/truncates to
_CONSTRUCTION = threading.Lock()


def clap_module() -> types.ModuleType:
    """``clap_module`` from the installed laion-clap, imported as laion_clap itself imports it."""
    if "clap_module" in sys.modules:
        return sys.modules["clap_module"]
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        raise CadenzaError("conditioner 'clap' needs the laion-clap package: pip install 'cadenza[clap]'")
    folder = str(next(iter(spec.submodule_search_locations)))
    if folder not in sys.path:
        sys.path.append(folder)  # as laion_clap/__init__.py does
    import clap_module as module

    return module


# -- building -------------------------------------------------------------------------------------

def model_config(config: ClapConfig) -> dict[str, Any]:
    """laion-clap's model config dict for ``config``: the named one, with the overrides applied."""
    from clap_module import factory

    cfg = copy.deepcopy(factory._MODEL_CONFIGS[config.audio_model])
    audio, text = cfg["audio_cfg"], cfg["text_cfg"]
    if config.clip_seconds:
        audio["clip_samples"] = max(1, round(config.clip_seconds * audio["sample_rate"]))
    if config.mel_bins:
        audio["mel_bins"] = config.mel_bins
    text["model_type"] = config.text_model
    for key, value in (("width", config.text_width), ("layers", config.text_layers),
                       ("heads", config.text_heads), ("context_length", config.text_context)):
        if value:
            text[key] = value
    if _htsat_overridden(config):
        width, depths, _, _, _ = htsat_sizes(config)
        cfg["embed_dim"] = width * 2 ** (len(depths) - 1)  # the Swin tower's output width
    cfg["enable_fusion"] = config.enable_fusion
    cfg["fusion_type"] = config.fusion_type if config.enable_fusion else "None"
    cfg["joint_embed_shape"] = config.joint_dim
    return cfg


def _htsat_overridden(config: ClapConfig) -> bool:
    return bool(config.htsat_dim or config.htsat_depths or config.htsat_window or config.htsat_spec_size)


class _RobertaFromConfig:
    """Stands in for ``transformers.RobertaModel`` while CLAP is constructed: the roberta-base
    architecture, randomly initialised, without a download (checkpoint weights replace it)."""

    @staticmethod
    def from_pretrained(name: str, *args: Any, **kwargs: Any) -> nn.Module:
        from transformers import RobertaConfig, RobertaModel

        return RobertaModel(RobertaConfig(**ROBERTA_BASE))


@contextlib.contextmanager
def _patched(config: ClapConfig):
    """Swap CLAP's two construction hooks (see the module docstring), restored afterwards."""
    from clap_module import htsat, model

    def small_htsat(audio_cfg: Any, enable_fusion: bool = False, fusion_type: str = "None") -> nn.Module:
        width, depths, heads, window, spec = htsat_sizes(config)
        return htsat.HTSAT_Swin_Transformer(
            spec_size=spec, patch_size=4, patch_stride=(4, 4), num_classes=audio_cfg.class_num,
            embed_dim=width, depths=list(depths), num_heads=list(heads), window_size=window,
            config=audio_cfg, enable_fusion=enable_fusion, fusion_type=fusion_type)

    with _CONSTRUCTION:
        saved = model.create_htsat_model, model.RobertaModel
        if _htsat_overridden(config):
            model.create_htsat_model = small_htsat
        model.RobertaModel = _RobertaFromConfig
        try:
            yield
        finally:
            model.create_htsat_model, model.RobertaModel = saved


def make_clap(config: ClapConfig) -> nn.Module:
    """laion-clap's ``CLAP`` module for ``config`` (random weights; nothing downloaded)."""
    module = clap_module()
    cfg = model_config(config)
    try:
        with _patched(config):
            return module.CLAP(**cfg)
    except (AssertionError, RuntimeError, ValueError, ZeroDivisionError) as exc:
        raise WeightsError(f"clap: laion-clap cannot build this architecture "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


# -- LAION checkpoints ----------------------------------------------------------------------------

def resolve_checkpoint(config: ClapConfig, weights: Any) -> Path:
    """The local file of LAION weights: a path as given, or ``config.checkpoint`` in a hub repo.

    A hub file is taken from the local Hugging Face cache; only that one file is downloaded
    (never the whole multi-GB repo) and only when the machine is online. Failure is one line.
    """
    try:
        return weights.hub_file(config.checkpoint)
    except WeightsError as exc:
        raise WeightsError(f"clap: {exc}") from None


def _numpy_scalar_globals() -> list[Any]:
    """The numpy globals a checkpoint needs to hold numpy scalars (LAION's metadata has some)."""
    import numpy as np

    try:
        from numpy.core.multiarray import scalar
    except ImportError:  # numpy 2 moved it
        from numpy._core.multiarray import scalar
    dtype_classes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [scalar, np.dtype, *dtype_classes]


def read_laion_state(path: Path) -> dict[str, torch.Tensor]:
    """The model state dict of a LAION checkpoint, read with ``torch.load(weights_only=True)``.

    LAION's published ``.pt`` files keep training metadata beside the state dict, including
    numpy scalars, which the weights-only unpickler refuses by default; those numpy types (and
    nothing else) are allowlisted, so no code from the file can run. Only ``state_dict`` is
    kept; DDP's ``module.`` prefixes are removed.
    """
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_numpy_scalar_globals()):
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4": harmless for reading
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated, not a torch file, or unsafe
        raise WeightsError(f"{path}: not a readable CLAP checkpoint ({load_failure_reason(exc)})") from None
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: no CLAP state dict in the file (expected a dict of tensors, "
                           "or one under 'state_dict')")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_laion_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load LAION tensors; keys this transformers version keeps as non-persistent buffers
    (roberta's ``position_ids``, which laion_clap also deletes) are dropped first."""
    own = model.state_dict()
    state = {k: v for k, v in state.items()
             if k in own or not k.endswith(("embeddings.position_ids", "embeddings.token_type_ids"))}
    load_state_into(model, state, where)


# -- audio features -------------------------------------------------------------------------------

def log_mel(audio: torch.Tensor, cfg: Any) -> torch.Tensor:
    """laion_clap's ``get_mel`` in plain torch: power mel (HTK scale, no norm) in dB, ``[T, mel_bins]``.

    It feeds only the fusion input; non-fusion models compute their mel inside the model.
    """
    n_fft = cfg.window_size
    window = torch.hann_window(n_fft, device=audio.device)
    spec = torch.stft(audio, n_fft, hop_length=cfg.hop_size, win_length=n_fft, window=window, center=True,
                      pad_mode="reflect", return_complex=True).abs().pow(2)
    fb = mel_filterbank(n_fft // 2 + 1, cfg.mel_bins, cfg.sample_rate, f_min=cfg.fmin, f_max=cfg.fmax,
                        scale="htk").to(audio.device)
    mel = fb.T @ spec
    return (10.0 * torch.log10(mel.clamp(min=1e-10))).T


def repeat_pad(audio: torch.Tensor, length: int) -> torch.Tensor:
    """LAION's ``repeatpad``: whole repeats of a short ``[S]`` clip, then zeros up to ``length``."""
    if len(audio) >= length:
        return audio[:length]
    audio = audio.repeat(length // len(audio))
    return F.pad(audio, (0, length - len(audio)))


def fusion_input(audio: torch.Tensor, cfg: Any) -> dict[str, torch.Tensor]:
    """One clip's fusion features, as laion_clap's ``get_audio_features(..., 'fusion', 'repeatpad')``
    builds them, except that the three local chunks are the middle of their thirds (not random)."""
    clip = cfg.clip_samples
    if len(audio) <= clip:
        audio = repeat_pad(audio, clip)
        mel = log_mel(audio, cfg)
        return {"mel_fusion": torch.stack([mel] * 4), "longer": torch.tensor([False]), "waveform": audio}
    mel = log_mel(audio, cfg)
    chunk = clip // cfg.hop_size + 1
    total = mel.shape[0]
    start = (len(audio) - clip) // 2
    waveform = audio[start:start + clip]
    if chunk >= total:  # longer than the clip by less than a hop: LAION uses the whole mel
        mel = mel[:chunk] if total >= chunk else F.pad(mel, (0, 0, 0, chunk - total))
        return {"mel_fusion": torch.stack([mel] * 4), "longer": torch.tensor([False]), "waveform": waveform}
    thirds = torch.arange(total - chunk + 1).tensor_split(3)
    picks = [int(t[len(t) // 2]) if len(t) else 0 for t in thirds]
    chunks = [mel[i:i + chunk] for i in picks]
    # torchvision's Resize on a tensor: bilinear with antialiasing.
    shrunk = F.interpolate(mel[None, None], size=(chunk, cfg.mel_bins), mode="bilinear",
                           align_corners=False, antialias=True)[0, 0]
    return {"mel_fusion": torch.stack([shrunk, *chunks]), "longer": torch.tensor([True]), "waveform": waveform}


# -- the conditioner ------------------------------------------------------------------------------

def load_tokenizer(config: ClapConfig) -> Any:
    """CLIP BPE (shipped in the wheel) for ``transformer``; roberta-base's from the HF cache."""
    if config.text_model == "transformer":
        clap_module()
        from clap_module.tokenizer import SimpleTokenizer

        return SimpleTokenizer()
    from transformers import AutoTokenizer

    for local_only in (True, False):
        if not local_only and not network_allowed():
            break
        try:
            return AutoTokenizer.from_pretrained(ROBERTA_TOKENIZER, local_files_only=local_only)
        except Exception:  # noqa: BLE001 - not cached / not reachable: one line below
            continue
    raise WeightsError(f"clap: the roberta text model needs the {ROBERTA_TOKENIZER!r} tokenizer, which is not "
                       "in the local Hugging Face cache" + ("" if network_allowed() else " (offline)")
                       + f": run `huggingface-cli download {ROBERTA_TOKENIZER}` on a connected machine, "
                       "or use text_model: transformer")


class Clap(nn.Module):
    """The ``clap`` conditioner: ``embed_text`` and ``embed_audio`` -> L2-normalised ``[B, joint_dim]``.

    ``model`` is laion-clap's ``CLAP``; its state dict is this module's (prefixed ``model.``).
    """

    def __init__(self, config: ClapConfig):
        super().__init__()
        self.config = config
        self.info = config.info()
        self.model = make_clap(config)
        self.audio_cfg = self.model.audio_cfg
        self._tokenizer: Any = None  # set by build (load_tokenizer), or on first use

    # text -----------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Any:
        texts = check_prompts(texts)
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.config)
        device = self.model.logit_scale_a.device
        if self.config.text_model == "roberta":
            batch = self._tokenizer(texts, padding="max_length", truncation=True,
                                    max_length=ROBERTA_MAX_LENGTH, return_tensors="pt")
            return {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
        # CLIP tokens: <start> ... <end>, cut so that <end> survives (CLAP pools at the <end> token,
        # found as the largest id; laion's own tokenize() cuts it off for long prompts).
        bpe, length = self._tokenizer, self.model.context_length
        sot, eot = bpe.encoder["<start_of_text>"], bpe.encoder["<end_of_text>"]
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [sot] + bpe.encode(text)[: length - 2] + [eot]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids.to(device)

    def text_embedding(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenize(texts)
        return F.normalize(self.model.encode_text(tokens, device=self.model.logit_scale_a.device), dim=-1)

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> Conditioning:
        return Conditioning("pooled", self.text_embedding(texts))

    # audio ----------------------------------------------------------------------------------
    def _project(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        device = self.model.logit_scale_a.device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        # PANN fusion towers pick a random row as "longer" when none is, even in eval mode:
        # a fixed seed keeps embeddings deterministic and the caller's RNG untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            hidden = self.model.encode_audio(inputs, device=device)["embedding"]
        return F.normalize(self.model.audio_projection(hidden), dim=-1)

    def audio_embedding(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        check_audio(audio, sample_rate)
        cfg = self.audio_cfg
        x = prepare(audio.float(), sample_rate, cfg.sample_rate, 1)[:, 0].cpu()
        x = torch.round(x.clamp(-1.0, 1.0) * 32767.0) / 32767.0  # LAION embeds 16-bit audio
        if self.config.enable_fusion:
            rows = [fusion_input(row, cfg) for row in x]
            inputs = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
            return self._project(inputs)
        clip, length = cfg.clip_samples, x.shape[-1]
        if length <= clip:
            return self._project({"waveform": torch.stack([repeat_pad(row, clip) for row in x])})
        count = math.ceil(length / clip)
        starts = torch.linspace(0, length - clip, count).round().long().tolist()
        windows = torch.stack([x[:, s:s + clip] for s in starts], dim=1)  # [B, W, clip]
        emb = self._project({"waveform": windows.reshape(-1, clip)}).view(len(x), count, -1)
        return F.normalize(emb.mean(dim=1), dim=-1)

    @torch.no_grad()
    def embed_audio(self, audio: torch.Tensor, sample_rate: int) -> Conditioning:
        return Conditioning("pooled", self.audio_embedding(audio, sample_rate))

    def save_pretrained(self, folder):
        """A Cadenza checkpoint folder (safetensors + config.json) that ``weights:`` can name."""
        return save_module(self, folder, CLAP)


def build(config: ClapConfig, context) -> Clap:
    """Random or Cadenza-folder weights go through ``build_module``; LAION's files (hub or
    ``.pt``) are resolved first, so a missing file fails in one line before any model is built."""
    weights = context.weights
    if not is_laion_checkpoint(weights):
        tokenizer = load_tokenizer(config_for_weights(config, weights))
        module = build_module(Clap, config, context, CLAP)
    else:
        check_checkpoint(config, weights)
        path = resolve_checkpoint(config, weights)
        state = read_laion_state(path)
        tokenizer = load_tokenizer(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            module = Clap(config)
        load_laion_state(module.model, state, str(path))
        module = module.to(context.device).eval()
    module._tokenizer = tokenizer
    return module

