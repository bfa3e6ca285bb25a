"""Codec speed: encode/decode throughput through Cadenza's tokenizers vs the libraries directly.

Why: the ``encodec`` and ``dac`` components wrap the libraries' models (channel layout, input
checks, DAC's length fix-up). This measures what that wrapping costs, on the same model object
and the same real recording, so a regression in the wrapper shows up as overhead rather than
hiding in model time. Target: at most 5 % overhead. Throughput is seconds of audio per second
of wall time (x real time); each figure is the median of ``--repeats`` timed runs after a
warm-up. Cadenza and direct calls run back to back in alternating order, and the overhead is the
median of the per-pair time ratios, so drift in machine load (other jobs) hits both alike; it is
reported on CPU time and on wall time, which other jobs on a shared machine inflate. Because a
few % of model-time noise would hide the wrapper's true cost, that cost is also timed alone: the
component with its library calls stubbed to return their precomputed results.

Tiny random configs always run (they are what the tests use); the published models run only
when their pretrained weights are already cached (this never downloads), else they are listed
as skipped with the path that was checked.

    python benchmarks/codec_speed.py            # full run -> docs/benchmarks/codec_speed.{json,md}
    python benchmarks/codec_speed.py --quick    # 1 s of audio, 2 repeats, into a temporary folder
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from recording import command_line, load_average, machine_info, write_results

from cadenza.core.audio.io import load_audio, prepare
from cadenza.core.components import BuildContext
from cadenza.core.spec.params import structure_config
from cadenza.core.engine.weights import parse_weights
from cadenza.registry import discover

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = {1: ROOT / "tests" / "data" / "test_24k.wav", 2: ROOT / "tests" / "data" / "test_48k.wav"}
TINY_ENCODEC = {"n_filters": 4, "dimension": 16, "lstm": 1}
TINY_DAC = {"encoder_dim": 4, "decoder_dim": 32, "latent_dim": 16, "n_codebooks": 4, "codebook_dim": 4}
# (label, component, params, weights)
CASES = [
    ("encodec 24khz tiny", "encodec", {"model": "24khz", "bandwidth": 6.0, **TINY_ENCODEC}, "random"),
    ("encodec 48khz tiny", "encodec", {"model": "48khz", "bandwidth": 6.0, **TINY_ENCODEC}, "random"),
    ("dac 44khz tiny", "dac", {"model": "44khz", **TINY_DAC}, "random"),
    ("encodec 24khz", "encodec", {"model": "24khz", "bandwidth": 6.0}, "pretrained"),
    ("encodec 48khz", "encodec", {"model": "48khz", "bandwidth": 6.0}, "pretrained"),
    ("dac 44khz", "dac", {"model": "44khz"}, "pretrained"),
]


def pretrained_file(name: str, config) -> Path:
    """Where the component looks for its pretrained file (checked, never downloaded here)."""
    if name == "encodec":
        from cadenza.plugins.encodec.model import cached_checkpoint

        return cached_checkpoint(config)
    from cadenza.plugins.dac.model import cached_release

    return cached_release(config)


def direct_calls(name: str, tokenizer):
    """The library calls the component makes, on the same model object, without the wrapper."""
    model = tokenizer.model
    if name == "encodec":
        scale = tokenizer.config.rms if model.normalize else None

        def encode(x):
            return model.encode(x)[0][0]

        def decode(codes):
            s = None if scale is None else torch.full((codes.shape[0], 1), scale)
            return model.decode([(codes, s)])
    else:
        rate, used = tokenizer.info.sample_rate, tokenizer.info.num_codebooks

        def encode(x):
            return model.encode(model.preprocess(x, rate), n_quantizers=used)[1]

        def decode(codes):
            return model.decode(model.quantizer.from_codes(codes)[0])
    return encode, decode


def timed(fn, arg) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(arg)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(name: str, tokenizer, audio: torch.Tensor, repeats: int) -> dict:
    """Median times of each call and the paired overheads, after two warm-up rounds."""
    direct_encode, direct_decode = direct_calls(name, tokenizer)
    seconds = audio.shape[-1] / tokenizer.info.sample_rate
    with torch.inference_mode():
        codes = tokenizer.encode(audio)
        assert torch.equal(codes, direct_encode(audio)), "component and library disagree"
        for _ in range(2):  # warm-up: allocator, kernels, caches
            direct_encode(audio), tokenizer.encode(audio), direct_decode(codes), tokenizer.decode(codes)
        times = {key: [] for key in ("cadenza_encode", "direct_encode", "cadenza_decode", "direct_decode")}
        for i in range(repeats):
            pairs = [("cadenza", tokenizer.encode, tokenizer.decode), ("direct", direct_encode, direct_decode)]
            for who, enc, dec in (pairs if i % 2 == 0 else pairs[::-1]):
                times[f"{who}_encode"].append(timed(enc, audio))
                times[f"{who}_decode"].append(timed(dec, codes))
    row = {"audio_seconds": round(seconds, 3), "frames": int(codes.shape[-1]), "codebooks": int(codes.shape[1])}
    for op in ("encode", "decode"):
        ours, theirs = times[f"cadenza_{op}"], times[f"direct_{op}"]
        wall_ours, wall_theirs = statistics.median(t[0] for t in ours), statistics.median(t[0] for t in theirs)
        # Overheads from back-to-back pairs, so drift in machine load between repeats cancels out.
        # CPU time is the headline: other jobs on a shared machine inflate wall time, not CPU time.
        row[op] = {"cadenza_x_realtime": round(seconds / wall_ours, 1),
                   "direct_x_realtime": round(seconds / wall_theirs, 1),
                   "cadenza_median_s": round(wall_ours, 5), "direct_median_s": round(wall_theirs, 5),
                   "overhead_pct": _paired(ours, theirs, 1), "overhead_wall_pct": _paired(ours, theirs, 0)}
    for op, cost in wrapper_seconds(name, tokenizer, audio, codes).items():
        row[op]["wrapper_s"] = round(cost, 7)
        row[op]["wrapper_pct"] = round(cost / row[op]["direct_median_s"] * 100, 3)
    return row


def wrapper_seconds(name: str, tokenizer, audio: torch.Tensor, codes: torch.Tensor, calls: int = 200) -> dict:
    """The component's own work per call, isolated: the library calls it makes are replaced by
    returning their (precomputed, full-size) results, so only Cadenza's code is timed. Unlike the
    end-to-end difference this is not drowned in model-time noise."""
    model = tokenizer.model
    with torch.inference_mode():
        if name == "encodec":
            frames = model.encode(audio)
            scale = None if not model.normalize else torch.full((codes.shape[0], 1), tokenizer.config.rms)
            decoded = model.decode([(codes, scale)])
            stubs = {model: {"encode": lambda x: frames, "decode": lambda f: decoded}}
        else:
            rate, used = tokenizer.info.sample_rate, tokenizer.info.num_codebooks
            padded = model.preprocess(audio, rate)
            encoded = model.encode(padded, n_quantizers=used)
            latents = model.quantizer.from_codes(codes)
            decoded = model.decode(latents[0])
            stubs = {model: {"preprocess": lambda x, sr: padded, "encode": lambda x, n_quantizers=None: encoded,
                             "decode": lambda z: decoded},
                     model.quantizer: {"from_codes": lambda c: latents}}
        for obj, methods in stubs.items():  # instance attributes shadow the methods until deleted
            for key, stub in methods.items():
                obj.__dict__[key] = stub
        try:
            out = {}
            for op, fn, arg in (("encode", tokenizer.encode, audio), ("decode", tokenizer.decode, codes)):
                fn(arg)
                out[op] = statistics.median(timed(fn, arg)[0] for _ in range(calls))
        finally:
            for obj, methods in stubs.items():
                for key in methods:
                    del obj.__dict__[key]
    return out


def _paired(ours: list, theirs: list, index: int) -> float:
    return round((statistics.median(a[index] / b[index] for a, b in zip(ours, theirs)) - 1) * 100, 2)


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    lines = [
        "# Codec speed: Cadenza tokenizers vs the libraries",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {m['cpu_count']} CPUs ({m['processor'] or m['machine']}), torch {m['torch']}, "
        f"{m['threads']} torch thread(s), Python {m['python']}, load average at start {m['load_average']}.",
        "",
        f"Input: {s['seconds']} s of the real recordings in tests/data (resampled to each codec's rate), "
        f"median of {s['repeats']} runs after a warm-up, Cadenza and direct calls back to back in alternating "
        "order, under `torch.inference_mode()`. Throughput: seconds of audio per second of wall time "
        "(x real time), median. Overhead: median over the pairs of Cadenza time / direct time, minus 1, "
        "on CPU time (other jobs on a shared machine inflate wall time, not CPU time) and, in brackets, "
        f"on wall time (target <= {s['target_overhead_pct']} %). \"Wrapper alone\": the component with the "
        "library calls it makes replaced by their precomputed results, median of 200 calls, as % of the "
        "direct call: what Cadenza adds, free of model-time noise.",
        "",
        "| codec | weights | rate | frames/s | codebooks | encode Cadenza | encode direct "
        "| encode overhead: CPU (wall) | encode wrapper alone | decode Cadenza | decode direct "
        "| decode overhead: CPU (wall) | decode wrapper alone |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        cells = [r["codec"], r["weights"], r["sample_rate"], f"{r['frame_rate']:.2f}", r["codebooks"]]
        for op in (r["encode"], r["decode"]):
            cells += [f"{op['cadenza_x_realtime']}x", f"{op['direct_x_realtime']}x",
                      f"{op['overhead_pct']:+.1f} % ({op['overhead_wall_pct']:+.1f} %)",
                      f"{op['wrapper_s'] * 1e6:.0f} us = {op['wrapper_pct']:.2f} %"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    rows = result["results"]
    wrapper = max((max(r["encode"]["wrapper_pct"], r["decode"]["wrapper_pct"]) for r in rows), default=0)
    spread = max((max(abs(r["encode"]["overhead_pct"]), abs(r["decode"]["overhead_pct"])) for r in rows), default=0)
    target = s["target_overhead_pct"]
    lines += ["", f"Cadenza's own work per call is at most {wrapper:.2f} % of the library's time "
                  f"({'within' if wrapper <= target else 'OVER'} the {target:g} % target); the end-to-end CPU-time "
                  f"differences (largest {spread:.1f} % either way) are measurement noise around it."]
    if result["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- {x['codec']}: {x['reason']}" for x in result["skipped"]]
    if result["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of audio per call (default 10)")
    parser.add_argument("--repeats", type=int, default=51, help="timed runs per measurement (default 51)")
    parser.add_argument("--out-dir", default=None, help="default docs/benchmarks (--quick: a temporary folder)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steadier timings on a shared machine; 0 = torch's choice)")
    parser.add_argument("--quick", action="store_true", help="1 s of audio, 2 repeats: a smoke test")
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seconds, repeats = (1.0, 2) if args.quick else (args.seconds, args.repeats)
    out_dir = Path(args.out_dir or (tempfile.mkdtemp(prefix="codec_speed.") if args.quick else "docs/benchmarks"))
    load_at_start = load_average()
    registry = discover(environ={})
    recordings = {c: load_audio(p) for c, p in RECORDINGS.items()}
    results, skipped = [], []
    for label, name, params, weights_value in CASES:
        entry = registry.get("tokenizer", name)
        config = structure_config(entry.config, params)
        weights = parse_weights(weights_value)
        if not weights.is_random and not pretrained_file(name, config).exists():
            skipped.append({"codec": label, "reason": f"pretrained weights not cached at {pretrained_file(name, config)} "
                                                      "(this machine has no network; the benchmark never downloads)"})
            print(f"skip {label}: no cached weights", flush=True)
            continue
        info = config.describe(weights)
        tokenizer = entry.build(config, BuildContext(weights=weights))
        samples, rate = recordings[info.channels]
        audio = prepare(samples[None, :, : int(seconds * rate)], rate, info.sample_rate, info.channels)
        row = {"codec": label, "weights": weights_value, "params": params, "sample_rate": info.sample_rate,
               "frame_rate": info.frame_rate, **measure(name, tokenizer, audio, repeats)}
        print(json.dumps(row), flush=True)
        results.append(row)

    result = {
        "command": command_line(argv),
        "machine": machine_info(load_at_start),
        "settings": {"seconds": seconds, "repeats": repeats, "target_overhead_pct": 5.0},
        "results": results,
        "skipped": skipped,
        "notes": [
            "tiny configs are random-weight models with the published hop (EnCodec 320, DAC 512) but few channels, "
            "so model time is small and any per-call wrapper cost is exaggerated relative to the published models",
            "end-to-end overheads within +/- a few % are timing noise on a shared machine (a negative one means "
            "Cadenza's run happened to be faster); the wrapper-alone column is the cost Cadenza adds",
        ],
    }
    write_results(out_dir, "codec_speed", result, markdown(result))
    print(f"wrote {out_dir}/codec_speed.json and .md")
    return result


if __name__ == "__main__":
    main()
