"""Stage decode speed (tokens/s), with and without the KV cache.

Why: autoregressive decoding dominates generation time, and the KV cache is what makes it
linear instead of quadratic in the sequence length. This measures both paths of
:func:`cadenza.core.engine.decode.decode_stage` on a MusicLM-like *coarse* stage, scaled down to run
on a small CPU: conditioning prefix, ~10 s of semantic tokens read, SoundStream-like acoustic
codebooks written frame-major.

    python benchmarks/decode_speed.py                # full run -> docs/benchmarks/decode_speed.{json,md}
    python benchmarks/decode_speed.py --quick        # tiny smoke run into a temporary folder

Results are written atomically, with the exact command, the machine and the load average,
because numbers from a shared 2-core machine are only meaningful with that context.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from recording import command_line, load_average, machine_info, write_results

from cadenza.core.components import BuildContext, StageRequest
from cadenza.core.engine.decode import decode_stage
from cadenza.core.layout import StageLayout, StreamSlice
from cadenza.core.types import Conditioning, ConditioningInfo
from cadenza.plugins.transformer import TransformerConfig
from cadenza.plugins.transformer.model import build_transformer

FULL = {"d_model": 256, "layers": 6, "heads": 8, "codebook_size": 1024, "codebooks": 4, "read_tokens": 250, "cond_dim": 128}
QUICK = {"d_model": 32, "layers": 2, "heads": 4, "codebook_size": 64, "codebooks": 2, "read_tokens": 16, "cond_dim": 16}


def build(shape: dict) -> tuple[torch.nn.Module, StageLayout]:
    """Coarse stage: semantic at 25 Hz in, acoustic[0:Q] at 50 Hz out, pooled prefix conditioning."""
    layout = StageLayout(
        "coarse",
        (StreamSlice("semantic", 0, 1, shape["codebook_size"], 25.0),),
        StreamSlice("acoustic", 0, shape["codebooks"], shape["codebook_size"], 50.0),
        ConditioningInfo("pooled", dim=shape["cond_dim"]),
        "prefix",
    )
    config = TransformerConfig(d_model=shape["d_model"], layers=shape["layers"], heads=shape["heads"], prefix_length=4)
    return build_transformer(config, BuildContext(layout=layout)), layout


def request(layout: StageLayout, shape: dict, batch: int) -> StageRequest:
    gen = torch.Generator().manual_seed(0)
    semantic = torch.randint(0, shape["codebook_size"], (batch, 1, shape["read_tokens"]), generator=gen)
    cond = Conditioning("pooled", torch.randn(batch, shape["cond_dim"], generator=gen))
    return StageRequest(batch, (semantic,), cond)


def greedy(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return logits.argmax(dim=-1)


def measure(model, layout, shape, batch: int, tokens: int, use_cache: bool) -> dict:
    """Time one decode of ``tokens`` written tokens per row (after a short warm-up)."""
    req = request(layout, shape, batch)
    frames = max(1, tokens // layout.writes.num_codebooks)
    decode_stage(model, req, 2, greedy, use_cache=use_cache)  # warm-up: allocator, kernels
    start = time.perf_counter()
    decode_stage(model, req, frames, greedy, use_cache=use_cache)
    seconds = time.perf_counter() - start
    steps = frames * layout.writes.num_codebooks
    return {
        "batch": batch,
        "cache": use_cache,
        "tokens_per_row": steps,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(batch * steps / seconds, 1),  # all rows together
        "steps_per_s": round(steps / seconds, 1),  # per row (latency view)
    }


def markdown(result: dict) -> str:
    s, m = result["shape"], result["machine"]
    lines = [
        "# Stage decode speed",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {m['cpu_count']} CPUs ({m['processor'] or m['machine']}), torch {m['torch']}, "
        f"{m['threads']} torch threads, Python {m['python']}, load average at start {m['load_average']}.",
        "",
        f"Shape (MusicLM-like coarse stage, scaled down): d_model {s['d_model']}, {s['layers']} layers, "
        f"{s['heads']} heads; pooled conditioning (dim {s['cond_dim']}) as a 4-token prefix; reads "
        f"{s['read_tokens']} semantic tokens; writes {s['codebooks']} acoustic codebooks of {s['codebook_size']}, "
        f"{result['tokens']} tokens per row (greedy, no guidance). Context before the first written token: "
        f"{4 + s['read_tokens'] + 1} positions.",
        "",
        "| batch | KV cache | seconds | tokens/s (all rows) | steps/s (per row) |",
        "|---:|:---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['batch']} | {'yes' if r['cache'] else 'no'} | {r['seconds']} | {r['tokens_per_s']} | {r['steps_per_s']} |"
        )
    lines += ["", "Speed-up of cached over uncached decoding (same batch):", ""]
    lines += [f"- batch {b}: {x}x" for b, x in result["speedup"].items()] or ["- (no uncached runs)"]
    if result["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1000, help="written tokens per row (default 1000)")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument(
        "--uncached-batch-sizes",
        default="1",
        help="batch sizes also timed without the cache (default 1: uncached decoding is quadratic, "
        "and batch 8 at 1000 tokens takes ~15 min on 2 cores); 'all' for every batch size",
    )
    parser.add_argument("--out-dir", default=None, help="default docs/benchmarks (--quick: a temporary folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="tiny model and 16 tokens: a smoke test")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = QUICK if args.quick else FULL
    tokens = 16 if args.quick and args.tokens == 1000 else args.tokens
    batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    uncached = batches if args.uncached_batch_sizes == "all" else [
        int(b) for b in args.uncached_batch_sizes.split(",") if b.strip()
    ]
    out_dir = Path(args.out_dir or (tempfile.mkdtemp(prefix="decode_speed.") if args.quick else "docs/benchmarks"))
    notes = []
    skipped = [b for b in batches if b not in uncached]
    if skipped:
        notes.append(f"uncached decoding measured at batch {', '.join(map(str, uncached))} only (quadratic cost)")

    load_at_start = load_average()
    model, layout = build(shape)
    print(f"shape: {shape}, tokens per row: {tokens}", flush=True)
    runs = []
    for batch in batches:
        for use_cache in (True, False):
            if not use_cache and batch not in uncached:
                continue
            run = measure(model, layout, shape, batch, tokens, use_cache)
            print(json.dumps(run), flush=True)
            runs.append(run)
    speed = {(r["batch"], r["cache"]): r["tokens_per_s"] for r in runs}
    speedup = {b: round(speed[(b, True)] / speed[(b, False)], 1) for b in batches if (b, False) in speed}

    result = {
        "command": command_line(argv),
        "machine": machine_info(load_at_start),
        "shape": shape,
        "tokens": tokens,
        "runs": runs,
        "speedup": speedup,
        "notes": notes,
    }
    write_results(out_dir, "decode_speed", result, markdown(result))
    print(f"speed-up cached/uncached: {speedup}; wrote {out_dir}/decode_speed.json and .md")
    return result


if __name__ == "__main__":
    main()
