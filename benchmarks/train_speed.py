"""Stage training throughput (written tokens/s): from the token cache vs re-tokenising on the fly.

Why: ``cadenza prepare`` runs the codec, the semantic tokenizer and the conditioner over the
training set once, so that stage training reads tokens instead of audio. This measures what
that buys, per stage of a tiny download-free cascade (tiny-codec, mel-kmeans, byte-text):

- **cache**: examples cut from a token cache (:mod:`cadenza.plugins.workflows.train.stage_data`), then one
  AdamW step of the stage transformer;
- **re-tokenising**: the same examples (same clips, same crops) cut from the audio and run
  through the components the stage needs (codec for acoustic streams, semantic tokenizer,
  conditioner on the captions) in every step, then the same AdamW step;
- **cadenza train**: the real trainer (``cadenza.plugins.workflows.train.trainer.train``: Accelerate, EMA,
  clipping, logging) on the cache, its per-step tokens/s from ``log.jsonl`` (median).

    python benchmarks/train_speed.py             # -> docs/benchmarks/train_speed.{json,md}
    python benchmarks/train_speed.py --quick     # tiny smoke run into a temporary folder

Results are written atomically with the command, the machine and its load average: numbers
from a shared 2-core machine only mean something with that context. The tiny codec is far
cheaper than EnCodec or DAC, so the gap here is a lower bound of the gap with real codecs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
from recording import command_line, load_average, machine_info, write_results

from cadenza.core.engine.cascade import Cascade
from cadenza.core.components import StageRequest
from cadenza.plugins.workflows.train.stage_data import (
    StageDataset,
    StreamBatches,
    check_cache,
    collate,
    to_request,
)
from cadenza.plugins.workflows.prepare.token_cache import CacheWriter, TokenCache, cache_header
from cadenza.core.types import Conditioning

FULL = {"d_model": 128, "layers": 2, "heads": 4, "codec_channels": 32, "codec_latent": 64, "codebook_size": 256,
        "semantic_vocab": 128, "n_mels": 64, "cond_dim": 64, "clips": 32, "clip_seconds": 4.0, "crop_seconds": 2.0,
        "batch": 8, "steps": 30, "warmup": 3}
QUICK = {"d_model": 32, "layers": 1, "heads": 2, "codec_channels": 8, "codec_latent": 16, "codebook_size": 64,
         "semantic_vocab": 32, "n_mels": 32, "cond_dim": 16, "clips": 6, "clip_seconds": 1.0, "crop_seconds": 0.4,
         "batch": 2, "steps": 3, "warmup": 1}
STAGES = ("semantic", "coarse", "fine")

SPEC = """\
name: train-speed
conditioner: {{name: byte-text, params: {{dim: {cond_dim}, output: pooled}}}}
semantic_tokenizer: {{name: mel-kmeans, params: {{frame_rate: 25, vocab_size: {semantic_vocab}, n_mels: {n_mels}}}}}
tokenizer: {{name: tiny-codec, params: {{num_codebooks: 4, codebook_size: {codebook_size}, channels: {codec_channels}, latent_dim: {codec_latent}}}}}
stages:
  - {{name: semantic, role: semantic, model: transformer, params: {model}, writes: semantic}}
  - {{name: coarse, role: coarse, model: transformer, params: {model}, reads: [semantic], writes: "acoustic[0:2]"}}
  - {{name: fine, role: fine, model: transformer, params: {model}, reads: ["acoustic[0:2]"], writes: "acoustic[2:4]",
      conditioning: none}}
"""


def write_spec(shape: dict, folder: Path) -> Path:
    model = f"{{d_model: {shape['d_model']}, layers: {shape['layers']}, heads: {shape['heads']}}}"
    path = folder / "spec.yaml"
    path.write_text(SPEC.format(model=model, **shape))
    return path


def synthetic_audio(shape: dict, sample_rate: int) -> tuple[list[torch.Tensor], list[str]]:
    """Clips of a few drifting sines plus noise (deterministic), and a caption for each."""
    g = torch.Generator().manual_seed(0)
    samples = round(shape["clip_seconds"] * sample_rate)
    t = torch.arange(samples) / sample_rate
    clips, captions = [], []
    for i in range(shape["clips"]):
        freqs = 110 * 2 ** (torch.rand(3, generator=g) * 4)
        wave = sum(torch.sin(2 * math.pi * f * t * (1 + 0.01 * t)) for f in freqs) / 3
        clips.append((0.5 * wave + 0.05 * torch.randn(samples, generator=g))[None].float())
        captions.append(f"clip {i}: {' '.join(f'{float(f):.0f}Hz' for f in freqs)}")
    return clips, captions


def prepare(cascade: Cascade, audio: list[torch.Tensor], captions: list[str], folder: Path, shape: dict) -> float:
    """A token cache of the clips (what ``cadenza prepare`` writes); returns the seconds it took."""
    start = time.perf_counter()
    writer = CacheWriter(folder, cache_header(cascade.pipeline, clip_seconds=shape["clip_seconds"]))
    batch = 8
    with torch.inference_mode():
        for shard, first in enumerate(range(0, len(audio), batch)):
            wave = torch.stack(audio[first:first + batch])
            codes = cascade.tokenizer.encode(wave)
            semantic = cascade.semantic_tokenizer.tokenize(wave)
            cond = cascade.conditioner.embed_text(captions[first:first + batch]).values
            items = [({"source": f"clip{first + r}.wav", "split": "train", "caption": captions[first + r]},
                      {"acoustic": codes[r].clone(), "semantic": semantic[r].clone(), "cond_text": cond[r].clone()})
                     for r in range(wave.shape[0])]
            writer.write_shard(shard, items)
    writer.finish({})
    return time.perf_counter() - start


def stage_model(cascade: Cascade, name: str) -> torch.nn.Module:
    model = cascade.models[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for p in model.parameters():  # a fresh copy per measurement: re-initialise in place
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=0.02)
    return model.train()


def time_steps(model: torch.nn.Module, next_batch, steps: int, warmup: int) -> float:
    """Median seconds per step (after ``warmup`` steps) of: get a batch, forward, backward, AdamW.

    The median, because on a shared machine a few steps can be stalled by other processes."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        request, written = next_batch(i)
        loss = model.loss(request, written)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_stage(cascade: Cascade, name: str, cache: TokenCache, audio: list[torch.Tensor], captions: list[str],
                  shape: dict) -> dict:
    stage = next(s for s in cascade.pipeline.stages if s.spec.name == name)
    layout = stage.layout
    plan = check_cache(cache, cascade.pipeline, name, seconds=shape["crop_seconds"], conditioning="text")
    dataset = StageDataset(cache, layout, plan, seed=0)
    sampler = iter(StreamBatches(plan.train, shape["batch"], 1, 0, seed=0))
    keys = [next(sampler) for _ in range(shape["warmup"] + shape["steps"])]
    rate = cascade.sample_rate
    crop = round(shape["crop_seconds"] * rate)
    streams = {sl.stream for sl in (*layout.reads, layout.writes)}
    conditioned = layout.conditioning_mode != "none"

    def from_cache(i: int):
        return to_request(collate([dataset[k] for k in keys[i]], layout), "cpu")

    def from_audio(i: int):
        starts, texts = [], []
        for epoch, clip in keys[i]:
            seconds = dataset.starts(clip, epoch)[dataset.base] / dataset.rates[dataset.base]
            starts.append(round(seconds * rate))
            texts.append(captions[clip])
        wave = torch.stack([audio[clip][:, s:s + crop] for (_, clip), s in zip(keys[i], starts)])
        tokens = {}
        with torch.no_grad():
            if "acoustic" in streams:
                tokens["acoustic"] = cascade.tokenizer.encode(wave)
            if "semantic" in streams:
                tokens["semantic"] = cascade.semantic_tokenizer.tokenize(wave)[:, None]
            cond = cascade.conditioner.embed_text(texts) if conditioned else None
        cond = None if cond is None else Conditioning(cond.kind, cond.values.detach().clone(), cond.mask)

        def take(sl):
            return tokens[sl.stream][:, sl.start:sl.stop, :sl.num_frames(shape["crop_seconds"])].long()

        written = take(layout.writes).transpose(1, 2).reshape(wave.shape[0], -1)
        return StageRequest(wave.shape[0], tuple(take(sl) for sl in layout.reads), cond), written

    per_example = dataset.written_tokens
    batch_tokens = per_example * shape["batch"]
    cached = time_steps(stage_model(cascade, name), from_cache, shape["steps"], shape["warmup"])
    live = time_steps(stage_model(cascade, name), from_audio, shape["steps"], shape["warmup"])
    return {"stage": name, "written_tokens_per_example": per_example, "batch": shape["batch"],
            "cache_step_s": round(cached, 4), "cache_tokens_per_s": round(batch_tokens / cached, 1),
            "retokenise_step_s": round(live, 4), "retokenise_tokens_per_s": round(batch_tokens / live, 1),
            "speedup": round(live / cached, 2)}


def measure_trainer(spec: Path, cache: Path, name: str, shape: dict, folder: Path) -> dict:
    from cadenza.plugins.workflows.train.config import TrainConfig
    from cadenza.plugins.workflows.train.trainer import train

    steps = shape["warmup"] + shape["steps"]
    run = folder / f"run-{name}"
    train(TrainConfig(pipeline=spec, stage=name, cache=cache, out=run, steps=steps, batch_size=shape["batch"],
                      seconds=shape["crop_seconds"], conditioning="text", checkpoint_every=steps, valid_every=steps))
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r and r["step"] > shape["warmup"]]
    return {"trainer_tokens_per_s": round(statistics.median(rates), 1)}


def markdown(result: dict) -> str:
    s, m = result["shape"], result["machine"]
    lines = [
        "# Stage training speed: token cache vs re-tokenising",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {m['cpu_count']} CPUs ({m['processor'] or m['machine']}), torch {m['torch']}, "
        f"{m['threads']} torch threads, Python {m['python']}, load average at start {m['load_average']}.",
        "",
        f"Pipeline: tiny-codec (4 codebooks of {s['codebook_size']}, 50 Hz, {s['codec_channels']} channels), "
        f"mel-kmeans ({s['semantic_vocab']} ids, 25 Hz, {s['n_mels']} mels), byte-text (pooled, dim {s['cond_dim']}); "
        f"stage transformers d_model {s['d_model']}, {s['layers']} layers, {s['heads']} heads. "
        f"{s['clips']} synthetic clips of {s['clip_seconds']:g} s with captions; crops of {s['crop_seconds']:g} s, "
        f"batch {s['batch']}, median of {s['steps']} timed steps after {s['warmup']} warm-up steps (one process, AdamW).",
        "",
        f"Preparing the cache once took {result['prepare_seconds']} s for {s['clips']} clips "
        f"({result['prepare_seconds_per_clip']} s per clip).",
        "",
        "Tokens/s count the written (predicted) tokens of a step. *cadenza train* is the real trainer on the "
        "cache (Accelerate, EMA, gradient clipping, JSONL log), median over its timed steps.",
        "",
        "| stage | written tokens / example | cache tokens/s | re-tokenising tokens/s | speed-up | cadenza train tokens/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        lines.append(f"| {r['stage']} | {r['written_tokens_per_example']} | {r['cache_tokens_per_s']} | "
                     f"{r['retokenise_tokens_per_s']} | {r['speedup']}x | {r['trainer_tokens_per_s']} |")
    lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=None, help="default docs/benchmarks (--quick: a temporary folder)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: tiny models gain nothing from more, and one thread keeps "
                        "timings steady when other processes share the cores)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and 3 steps: a smoke test")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = dict(QUICK if args.quick else FULL)
    if args.steps:
        shape["steps"] = args.steps
    out_dir = Path(args.out_dir or (tempfile.mkdtemp(prefix="train_speed.") if args.quick else "docs/benchmarks"))
    load_at_start = load_average()

    with tempfile.TemporaryDirectory(prefix="train_speed.work.") as work:
        work = Path(work)
        spec = write_spec(shape, work)
        cascade = Cascade.from_spec(str(spec))
        audio, captions = synthetic_audio(shape, cascade.sample_rate)
        prepare_seconds = prepare(cascade, audio, captions, work / "cache", shape)
        cache = TokenCache(work / "cache")
        results = []
        for name in STAGES:
            row = measure_stage(cascade, name, cache, audio, captions, shape)
            row.update(measure_trainer(spec, work / "cache", name, shape, work))
            print(json.dumps(row), flush=True)
            results.append(row)

    result = {
        "command": command_line(argv),
        "machine": machine_info(load_at_start),
        "shape": shape,
        "prepare_seconds": round(prepare_seconds, 3),
        "prepare_seconds_per_clip": round(prepare_seconds / shape["clips"], 4),
        "results": results,
        "notes": [
            "re-tokenising runs only what a stage needs: the semantic stage skips the codec, the fine stage "
            "skips the semantic tokenizer and the conditioner",
            "tiny-codec is a few small convolutions; EnCodec, DAC or a w2v-BERT semantic tokenizer cost far more "
            "per second of audio, so with real components the cache's advantage grows",
            "the cache path includes reading and cropping the tokens; the trainer column adds Accelerate, EMA "
            "updates, clipping and logging on top of it",
        ],
    }
    write_results(out_dir, "train_speed", result, markdown(result))
    print(f"wrote {out_dir}/train_speed.json and .md")
    return result


if __name__ == "__main__":
    main()
