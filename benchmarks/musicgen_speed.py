"""MusicGen decoding through Cadenza vs ``transformers``' own ``generate``, same weights, interleaved.

Why: the ``musicgen`` stage runs the library's decoder module under Cadenza's delayed decode loop
(guidance, samplers, windows); a user must lose nothing in speed for what Cadenza adds. Both sides
decode greedily from the same prompts to the same number of frames with guidance 3, the runs
alternating so machine load hits both alike. The shape is musicgen-small's (24 layers, width 1024,
16 heads, 4 x 2048 codebooks, a t5-base-sized text encoder) with random weights: speed does not
depend on the values, and no download is needed. The codec decode at the end of ``generate`` is
replaced by returning the codes (Cadenza's timing has no codec either); both include the text
encoder. The ceiling is estimated as the bytes of the decoder's weights read per step over the
measured memory bandwidth (batch 1 decoding is bandwidth-bound on a CPU).

    python benchmarks/musicgen_speed.py               # -> docs/benchmarks/musicgen_speed.{json,md}
    python benchmarks/musicgen_speed.py --quick       # tiny shape, into a temporary folder
    python benchmarks/musicgen_speed.py --melody      # musicgen-melody (chroma + text prefix) -> musicgen_melody_speed

``--melody`` measures the ``musicgen-melody`` stage the same way at the same decoder shape
(musicgen-melody itself is medium-sized; the per-step work beyond the decoder is what differs): a
random one-hot chroma of 10 s is the melody on both sides, given to the library as
``input_features``, so its 235-frame prefix plus the text enter the cache at the first step.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from recording import command_line, load_average, machine_info, write_results

from cadenza.core.components import StageRequest
from cadenza.core.engine.decode import decode_stage
from cadenza.core.layout import StageLayout, StreamSlice
from cadenza.core.types import Conditioning, ConditioningInfo
from cadenza.plugins.musicgen.chroma import ChromaSettings
from cadenza.plugins.musicgen.melody_model import MelodyConditioned, MusicgenMelodyStage
from cadenza.plugins.musicgen.model import MusicgenStage

SMALL = {"hidden": 1024, "layers": 24, "heads": 16, "ffn": 4096, "codebooks": 4, "vocab": 2048,
         "text": {"d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_heads": 12}}
QUICK = {"hidden": 64, "layers": 2, "heads": 4, "ffn": 128, "codebooks": 4, "vocab": 64,
         "text": {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4}}
CHROMA_LENGTH = 235  # musicgen-melody's: 30 s of chroma frames


def chroma(batch: int) -> torch.Tensor:
    """A melody's one-hot chroma ``[B, 78, 12]`` (10 s), the same on both sides."""
    classes = torch.randint(0, 12, (batch, 78), generator=torch.Generator().manual_seed(batch))
    return torch.nn.functional.one_hot(classes, 12).float()


PROMPTS = ["80s pop track with bassy drums and synth", "90s rock song with loud guitars and heavy drums",
           "a calm piano piece", "lo-fi hip hop with a jazzy sample"]


def build(shape: dict, melody: bool = False):
    from transformers import (EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration,
                              MusicgenMelodyConfig, MusicgenMelodyDecoderConfig, MusicgenMelodyForConditionalGeneration,
                              T5Config)

    text = T5Config(vocab_size=32128, dropout_rate=0.0, **shape["text"])
    codec = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=4, codebook_size=shape["vocab"],
                          codebook_dim=16, hidden_size=16, upsampling_ratios=[8, 5, 4, 4],
                          target_bandwidths=[0.55 * shape["codebooks"] * 2], num_residual_layers=1, compress=2)
    vocab = shape["vocab"]
    decoder = (MusicgenMelodyDecoderConfig if melody else MusicgenDecoderConfig)(vocab_size=vocab, num_hidden_layers=shape["layers"], ffn_dim=shape["ffn"],
                                    num_attention_heads=shape["heads"], hidden_size=shape["hidden"],
                                    num_codebooks=shape["codebooks"], pad_token_id=vocab, bos_token_id=vocab,
                                    decoder_start_token_id=vocab)
    parts = {"text_encoder": text.to_dict(), "audio_encoder": codec.to_dict(), "decoder": decoder.to_dict()}
    torch.manual_seed(0)
    if melody:
        model = MusicgenMelodyForConditionalGeneration(MusicgenMelodyConfig(**parts, chroma_length=CHROMA_LENGTH)).eval()
    else:
        model = MusicgenForConditionalGeneration(MusicgenConfig(**parts)).eval()
    layout = StageLayout("lm", (), StreamSlice("acoustic", 0, shape["codebooks"], vocab, 50.0),
                         ConditioningInfo("sequence", dim=shape["text"]["d_model"], length=64),
                         "prefix" if melody else "cross")
    if melody:
        return model, MusicgenMelodyStage(model.decoder, model.enc_to_dec_proj, model.audio_enc_to_dec_proj, layout,
                                          CHROMA_LENGTH, ChromaSettings())
    return model, MusicgenStage(model.decoder, model.enc_to_dec_proj, layout)


def inputs(batch: int) -> dict:
    ids = torch.randint(5, 32000, (batch, 16), generator=torch.Generator().manual_seed(batch))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def run_library(model, batch: int, frames: int, codebooks: int, melody: bool = False) -> torch.Tensor:
    caught = {}
    decode = model.audio_encoder.decode

    def keep(codes, *args, **kwargs):
        caught["codes"] = codes
        return _Values()

    model.audio_encoder.decode = keep
    try:
        extra = {"input_features": chroma(batch)} if melody else {}
        model.generate(**inputs(batch), **extra, do_sample=False, guidance_scale=3.0, max_new_tokens=frames + codebooks - 1)
    finally:
        model.audio_encoder.decode = decode
    return caught["codes"][0]


class _Values:
    audio_values = torch.zeros(1)


def run_cadenza(model, stage, batch: int, frames: int) -> torch.Tensor:
    batch_inputs = inputs(batch)
    with torch.inference_mode():
        states = model.text_encoder(**batch_inputs).last_hidden_state
    conditioning = Conditioning("sequence", states, batch_inputs["attention_mask"].bool())
    if isinstance(stage, MusicgenMelodyStage):
        stage = MelodyConditioned(stage, chroma(batch))
    return decode_stage(stage, StageRequest(batch, conditioning=conditioning), frames, lambda x, g: x.argmax(-1),
                        guidance_scale=3.0)


def bandwidth_gb_s() -> float:
    """Memory bandwidth of a large tensor copy (read + write), best of three."""
    source = torch.empty(64 * 1024 * 1024, dtype=torch.float32).normal_()
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        target.copy_(source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() * 4 / best / 1e9


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50, help="frames decoded per run (default 50: 1 s at 50 Hz)")
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per side and batch size")
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--quick", action="store_true", help="a tiny shape: a smoke test")
    parser.add_argument("--melody", action="store_true", help="the musicgen-melody stage, with a melody")
    args = parser.parse_args(argv)
    shape = QUICK if args.quick else SMALL
    out_dir = Path(args.out_dir or (tempfile.mkdtemp(prefix="musicgen_speed.") if args.quick else "docs/benchmarks"))
    load_at_start = load_average()
    model, stage = build(shape, melody=args.melody)
    library = lambda batch, frames: run_library(model, batch, frames, shape["codebooks"], args.melody)  # noqa: E731
    decoder_bytes = sum(p.numel() * p.element_size() for p in model.decoder.parameters())
    runs, agree = [], True
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        library(batch, 2), run_cadenza(model, stage, batch, 2)  # warm-up
        times = {"transformers": [], "cadenza": []}
        for _ in range(args.repeats):
            for side in ("transformers", "cadenza"):
                start = time.perf_counter()
                codes = (library(batch, args.frames) if side == "transformers"
                         else run_cadenza(model, stage, batch, args.frames))
                times[side].append(time.perf_counter() - start)
                if side == "transformers":
                    reference = codes
                else:
                    agree = agree and torch.equal(codes, reference)
        steps = args.frames + shape["codebooks"] - 1
        for side, seconds in times.items():
            best = min(seconds)
            runs.append({"side": side, "batch": batch, "steps": steps, "seconds": [round(s, 3) for s in seconds],
                         "steps_per_s": round(steps / best, 2), "ms_per_step": round(1000 * best / steps, 1),
                         "median_s": round(statistics.median(seconds), 3)})
    bandwidth = bandwidth_gb_s()
    ratio = {r["batch"]: round(r["steps_per_s"] / next(x["steps_per_s"] for x in runs
                                                       if x["side"] == "transformers" and x["batch"] == r["batch"]), 2)
             for r in runs if r["side"] == "cadenza"}
    result = {"command": command_line(argv), "machine": machine_info(load_at_start), "shape": shape,
              "model": "musicgen-melody" if args.melody else "musicgen",
              "frames": args.frames, "runs": runs, "cadenza_over_transformers": ratio, "same_codes": agree,
              "decoder_weight_bytes": decoder_bytes, "bandwidth_gb_s": round(bandwidth, 1),
              "ceiling_steps_per_s_batch1": round(bandwidth * 1e9 / decoder_bytes, 2),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    write_results(out_dir, "musicgen_melody_speed" if args.melody else "musicgen_speed", result, markdown(result))
    return result


def markdown(result: dict) -> str:
    s, m = result["shape"], result["machine"]
    title = "MusicGen-melody" if result.get("model") == "musicgen-melody" else "MusicGen"
    lines = [f"# {title} decode speed: Cadenza vs transformers", "", f"Command: `{result['command']}`", "",
             f"Machine: {m['cpu_count']} CPUs ({m['processor'] or m['machine']}), torch {m['torch']}, "
             f"{m['threads']} torch threads, load average at start {m['load_average']}.", "",
             f"Shape: decoder width {s['hidden']}, {s['layers']} layers, {s['heads']} heads, {s['codebooks']} x "
             f"{s['vocab']} codebooks; T5 width {s['text']['d_model']}, {s['text']['num_layers']} layers; random "
             f"weights. Greedy, guidance 3 (batch doubled), {result['frames']} frames "
             f"({result['frames'] + s['codebooks'] - 1} delayed steps) per run, runs alternating.", "",
             "| side | batch | steps/s (best) | ms/step | seconds per run |", "|---|---:|---:|---:|---|"]
    for r in result["runs"]:
        lines.append(f"| {r['side']} | {r['batch']} | {r['steps_per_s']} | {r['ms_per_step']} | {r['seconds']} |")
    lines += ["", f"Cadenza / transformers (steps/s, best runs): {result['cadenza_over_transformers']}; the codes of "
              f"every run were {'identical' if result['same_codes'] else 'NOT identical'} to the library's.", "",
              f"Ceiling at batch 1: the decoder's weights ({result['decoder_weight_bytes'] / 1e9:.2f} GB) are read once "
              f"per step; at the measured copy bandwidth of {result['bandwidth_gb_s']} GB/s that is at most "
              f"{result['ceiling_steps_per_s_batch1']} steps/s. Peak resident memory of the process: "
              f"{result['peak_rss_mb']} MB (both models share the weights)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
