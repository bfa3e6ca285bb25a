"""Continuation seam: does the sound change where a continuation takes over from its prime?

Why: a user continued a recording (``cadenza generate ... --prime intro.wav``) and measured the
energy below 300 Hz fall from -23.6 to -30.9 dB at the boundary. This primes a pipeline (the
bundled ``default`` unless told otherwise) with real recordings (``tests/data/*.wav``, several
segments of each) and with clips ``cadenza corpus`` renders, and measures each output around
the boundary:

* **band energies** below 300 Hz, 300-2000 Hz and above 2 kHz in the second before and the
  second after it, beside the same two seconds of the *original* recording, which goes on past
  the prime: how much music changes from one second to the next by itself;
* **spectral flux** across it: the mean absolute dB difference of the mel spectra of two windows
  that meet at the boundary, against the same flux between every pair of windows that meet
  inside the prime part and inside the new part (its percentile in each);
* **movement** of the prime part and of the new part (one minus the similarity of spectra half
  a second apart, as ``longform_stability.py`` measures it), so that a seam is not smoothed
  over by music that stops moving;
* what could cause a jump, one by one: the prime's decoded part against its codes decoded alone
  (the codec's view of what follows), the chunked decode against one whole decode, the output's
  level against the decoded tokens' (normalisation), and the band energies read off the tokens
  themselves (the codebooks' log spectra, no phase recovery), beside the pipeline's own level:
  the same prompts generated without a prime.

Each run is recorded under ``--label`` in ``continuation_seam.json``, beside the runs recorded
before it (so a fix can be measured against the engine as it was):

    python benchmarks/continuation_seam.py --label after       # -> docs/benchmarks/continuation_seam.{json,md}
    python benchmarks/continuation_seam.py --corpus 2 --seeds 0 --out-dir scratch   # quicker
    python benchmarks/continuation_seam.py --pipeline tiny-random --corpus 0 --segments 1 --seeds 0 \
        --new-seconds 1 --out-dir scratch                                             # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = ROOT / "tests" / "data"
PROMPT = "a lively song with drums, bass and guitar"  # the recordings have no caption; corpus clips use theirs
BANDS = (("low", 0.0, 300.0), ("mid", 300.0, 2000.0), ("high", 2000.0, None))


def band_energies(audio, rate: int, begin: int, end: int) -> dict[str, float]:
    """dB (re full scale) of the mean power in each of :data:`BANDS` over samples ``begin..end``
    of mono ``[S]`` audio (STFT power averaged over frames, then summed over the band's bins)."""
    import torch

    x = torch.as_tensor(audio[begin:end]).double()
    n_fft = 2048  # 12 Hz bins at 24 kHz: a few bins below 300 Hz
    power = torch.stft(x, n_fft, n_fft // 4, window=torch.hann_window(n_fft, dtype=x.dtype), center=False,
                       return_complex=True).abs().pow(2).mean(-1)
    power = power / torch.hann_window(n_fft, dtype=x.dtype).pow(2).sum() / n_fft * 2  # a full-scale sine: about 0 dB
    hz = torch.fft.rfftfreq(n_fft, 1 / rate, dtype=x.dtype)
    out = {}
    for name, low, high in BANDS:
        chosen = (hz >= low) & (hz < (high if high is not None else rate))
        out[name] = round(10 * torch.log10(power[chosen].sum().clamp_min(1e-20)).item(), 2)
    return out


def token_band_levels(tokenizer, codes, frame_rate: float, begin: float, end: float) -> dict[str, float] | None:
    """Band energies (dB, on the codec's own scale: only differences mean anything) of the spectra
    codes ``[Q, T]`` stand for over seconds ``begin..end``: the codebooks' log spectra summed,
    before any phase recovery (a ``spectral-codec``; None for a codec without ``magnitudes``)."""
    import torch

    if not (callable(getattr(tokenizer, "dequantize", None)) and callable(getattr(tokenizer, "magnitudes", None))):
        return None
    with torch.inference_mode():
        values = tokenizer.dequantize(codes[None, :, round(begin * frame_rate):round(end * frame_rate)])
        power = tokenizer.magnitudes(values)[0].double().pow(2).mean(-1)  # [F]: mean over frames
    rate = tokenizer.info.sample_rate
    hz = torch.linspace(0, rate / 2, power.shape[0], dtype=power.dtype)
    out = {}
    for name, low, high in BANDS:
        chosen = (hz >= low) & (hz < (high if high is not None else rate))
        out[name] = round(10 * torch.log10(power[chosen].sum().clamp_min(1e-20)).item(), 2)
    return out


def flux_at_boundary(audio, rate: int, boundary: int) -> dict[str, float]:
    """Spectral flux of two adjoining mel windows that meet at sample ``boundary``, and its
    percentile among the same flux at every window boundary inside the prime part and inside
    the new part (a window is :func:`cadenza.core.audio.plot.mel_spectrogram_db`'s FFT long)."""
    import numpy as np

    from cadenza.core.audio.plot import mel_spectrogram_db

    db, hop_s, _ = mel_spectrogram_db(audio, rate)
    hop = round(hop_s * rate)
    lag = 4  # the FFT is four hops long: frames t and t + 4 cover adjoining, non-overlapping windows
    flux = np.abs(db[:, lag:] - db[:, :-lag]).mean(axis=0)  # flux[t]: windows centred at t and t + lag meet at (t + 2) hop
    meets = (np.arange(flux.shape[0]) + lag // 2) * hop
    seam = int(np.argmin(np.abs(meets - boundary)))
    prime = flux[(meets <= boundary - lag * hop) & (meets >= lag * hop)]
    new = flux[meets >= boundary + lag * hop]
    return {"seam": round(float(flux[seam]), 2), "prime_median": round(float(np.median(prime)), 2),
            "new_median": round(float(np.median(new)), 2),
            "percentile_in_prime": round(float((prime < flux[seam]).mean() * 100), 1),
            "percentile_in_new": round(float((new < flux[seam]).mean() * 100), 1)}


def primes(prime_seconds: float, corpus: int, corpus_seed: int, rate: int, segments: int | None = None):
    """``(name, prompt, audio [S] at rate)`` of every prime plus the second after it: segments
    of each recording in ``tests/data`` (one every ``prime_seconds + 1`` s, at most ``segments``
    of each when given), then ``corpus`` rendered clips."""
    from longform_stability import rendered_corpus

    from cadenza.core.audio.io import load_audio, prepare

    span = prime_seconds + 1.0
    for path in sorted(RECORDINGS.glob("*.wav")):
        audio, source = load_audio(path)
        mono = prepare(audio[None], source, rate, 1)[0, 0]
        for k in range(min(int(mono.shape[-1] / rate // span), segments if segments is not None else math.inf)):
            yield f"{path.name}@{k * span:g}s", PROMPT, mono[round(k * span * rate):round((k + 1) * span * rate)]
    if corpus:
        for row, audio, source in rendered_corpus(corpus, span, corpus_seed):
            yield f"corpus {row['id']}", row["caption"], prepare(audio[None], source, rate, 1)[0, 0]


def measure(cascade, clips, prime_seconds: float, new_seconds: float, seeds: list[int], window, overlap, hold):
    """Every clip primed with its first ``prime_seconds`` and continued to ``prime_seconds +
    new_seconds``, once per seed (all clips of a seed in one batch): the measures of the docstring."""
    import torch

    from longform_stability import movement

    from cadenza.core.engine.longform import DECODE_MARGIN, decode_chunked, frames_before

    rate, frame_rate = cascade.sample_rate, cascade.frame_rates["acoustic"]
    names, prompts = [c[0] for c in clips], [c[1] for c in clips]
    whole = torch.stack([c[2] for c in clips])[:, None]  # [B, 1, S]: prime and the second after it
    boundary = round(prime_seconds * rate)
    prime = whole[..., :boundary]
    seconds = prime_seconds + new_seconds
    rows = []
    for seed in seeds:
        row_seeds = [seed * 1000 + k for k in range(len(clips))]
        started = time.perf_counter()
        out = cascade.generate(prompts, seconds=seconds, seed=row_seeds, prime=prime, prime_rate=rate,
                               window=window, overlap=overlap, steering=cascade.steering(hold=hold), watermark=False)
        wall = time.perf_counter() - started
        plain = cascade.generate(prompts, seconds=2.0, seed=row_seeds, watermark=False)
        codes = out.tokens["acoustic"]
        with torch.inference_mode():  # the stages' own level: their tokens decoded, before any output gain
            own = cascade.tokenizer.decode(plain.tokens["acoustic"]).float().cpu()
            alone = cascade.tokenizer.decode(codes[:, :, :round(prime_seconds * frame_rate)]).float().cpu()
            decoded = decode_chunked(cascade.tokenizer, codes, frame_rate, rate,
                                     frames_before(out.window or cascade.default_window, frame_rate),
                                     frames_before(DECODE_MARGIN, frame_rate))
            one_decode = cascade.tokenizer.decode(codes).float().cpu()
        for k, name in enumerate(names):
            y, original = out.audio[k, 0].numpy(), whole[k, 0].numpy()
            before = band_energies(y, rate, boundary - rate, boundary)
            after = band_energies(y, rate, boundary, boundary + rate)
            gain = 20 * torch.log10(out.audio[k].abs().max() / decoded[k, :, :out.audio.shape[-1]].abs().max())
            rows.append({
                "clip": name, "seed": row_seeds[k], "prompt": prompts[k],
                "before": before, "after": after,
                "original_before": band_energies(original, rate, boundary - rate, boundary),
                "original_after": band_energies(original, rate, boundary, boundary + rate),
                "own_level": band_energies(own[k, 0].numpy(), rate, 0, 2 * rate),
                "tokens_before": token_band_levels(cascade.tokenizer, codes[k], frame_rate, prime_seconds - 1,
                                                   prime_seconds),
                "tokens_after": token_band_levels(cascade.tokenizer, codes[k], frame_rate, prime_seconds,
                                                  prime_seconds + 1),
                "flux": flux_at_boundary(y, rate, boundary),
                "movement_prime": movement(out.audio[k, :, :boundary], rate),
                "movement_new": movement(out.audio[k, :, boundary:], rate),
                "prime_vs_decoded_alone_db": _max_band_gap(band_energies(y, rate, boundary - rate, boundary),
                                                           band_energies(alone[k, 0].numpy(), rate, boundary - rate,
                                                                         boundary)),
                "chunked_vs_whole_decode_db": _max_band_gap(
                    band_energies(decoded[k, 0].numpy(), rate, boundary - rate, boundary + rate),
                    band_energies(one_decode[k, 0].numpy(), rate, boundary - rate, boundary + rate)),
                "output_gain_db": round(float(gain), 2), "wall_s": round(wall, 1)})
    return rows


def _max_band_gap(a: dict, b: dict) -> float:
    return round(max(abs(a[k] - b[k]) for k in a), 2)


def _jump(rows: list[dict], after: str, before: str, band: str, absolute: bool = False) -> float | None:
    """Mean of ``after - before`` in ``band`` over the rows that have both; None when none has
    (the tokens' spectra of a codec without ``magnitudes``)."""
    values = [r[after][band] - r[before][band] for r in rows if r[after] is not None and r[before] is not None]
    if not values:
        return None
    return round(statistics.fmean(abs(v) for v in values) if absolute else statistics.fmean(values), 2)


def _correlation(rows: list[dict], band: str) -> float | None:
    """Across clips: how well the seam's jump follows the gap between the pipeline's own level
    and the prime's (1: the new part goes wherever the pipeline's own level is); None when fewer
    than two clips, or either side does not vary, leave nothing to correlate."""
    jumps = [r["after"][band] - r["before"][band] for r in rows]
    gaps = [r["own_level"][band] - r["before"][band] for r in rows]
    if len(rows) < 2 or len(set(jumps)) < 2 or len(set(gaps)) < 2:
        return None
    return round(statistics.correlation(jumps, gaps), 2)


def summarise(rows: list[dict]) -> dict:
    """Means over the clips and seeds of a run."""
    bands = [b[0] for b in BANDS]
    return {
        "clips": len(rows),
        "jump_db": {b: _jump(rows, "after", "before", b) for b in bands},
        "abs_jump_db": {b: _jump(rows, "after", "before", b, True) for b in bands},
        "original_jump_db": {b: _jump(rows, "original_after", "original_before", b) for b in bands},
        "original_abs_jump_db": {b: _jump(rows, "original_after", "original_before", b, True) for b in bands},
        "tokens_jump_db": {b: _jump(rows, "tokens_after", "tokens_before", b) for b in bands},
        "after_minus_own_level_db": {b: _jump(rows, "after", "own_level", b) for b in bands},
        "jump_follows_own_level": {b: _correlation(rows, b) for b in bands},
        "before_minus_own_level_db": {b: _jump(rows, "before", "own_level", b) for b in bands},
        "flux_seam": round(statistics.fmean(r["flux"]["seam"] for r in rows), 2),
        "flux_prime_median": round(statistics.fmean(r["flux"]["prime_median"] for r in rows), 2),
        "flux_new_median": round(statistics.fmean(r["flux"]["new_median"] for r in rows), 2),
        "flux_percentile_in_prime": round(statistics.fmean(r["flux"]["percentile_in_prime"] for r in rows), 1),
        "flux_percentile_in_new": round(statistics.fmean(r["flux"]["percentile_in_new"] for r in rows), 1),
        "movement_prime": round(statistics.fmean(r["movement_prime"] for r in rows), 3),
        "movement_new": round(statistics.fmean(r["movement_new"] for r in rows), 3),
        "prime_vs_decoded_alone_db_max": max(r["prime_vs_decoded_alone_db"] for r in rows),
        "chunked_vs_whole_decode_db_max": max(r["chunked_vs_whole_decode_db"] for r in rows),
        "output_gain_db_max": max(abs(r["output_gain_db"]) for r in rows),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--label", default="current", help="name of this run in the results (default: current)")
    parser.add_argument("--prime-seconds", type=float, default=4.0)
    parser.add_argument("--new-seconds", type=float, default=3.0, help="seconds generated after the prime")
    parser.add_argument("--corpus", type=int, default=8, help="rendered corpus clips to prime with (default: 8)")
    parser.add_argument("--corpus-seed", type=int, default=2026)
    parser.add_argument("--segments", type=int, default=None,
                        help="at most this many primes from each recording (default: every segment)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated generation seeds (default: 0,1)")
    parser.add_argument("--window", type=float, default=None, help="generation window (default: the spec's)")
    parser.add_argument("--overlap", type=float, default=None)
    parser.add_argument("--hold", type=float, default=None, help="piece memory (default: the spec's)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)

    from recording import command_line, load_average, machine_info, write_results

    from cadenza.core.engine.cascade import Cascade

    load = load_average()
    cascade = Cascade.from_spec(args.pipeline)
    clips = list(primes(args.prime_seconds, args.corpus, args.corpus_seed, cascade.sample_rate, args.segments))
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows = measure(cascade, clips, args.prime_seconds, args.new_seconds, seeds, args.window, args.overlap, args.hold)
    run = {"label": args.label, "command": command_line(argv), "pipeline": args.pipeline,
           "prime_seconds": args.prime_seconds, "new_seconds": args.new_seconds, "seeds": seeds,
           "window": args.window, "overlap": args.overlap, "hold": args.hold,
           "summary": summarise(rows), "rows": rows, "machine": machine_info(load)}
    previous = args.out_dir / "continuation_seam.json"
    runs = json.loads(previous.read_text())["runs"] if previous.exists() else []
    runs = [r for r in runs if r["label"] != args.label] + [run]
    result = {"runs": runs}
    write_results(args.out_dir, "continuation_seam", result, markdown(result))
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    runs = result["runs"]
    bands = [b[0] for b in BANDS]

    def triple(values: dict, spec: str = "+.1f") -> str:
        return " / ".join("n/a" if values[b] is None else format(values[b], spec) for b in bands)

    lines = ["# Continuation seam", "",
             "What happens to the sound where a continuation takes over from its prime "
             "(`benchmarks/continuation_seam.py`). Each run primes the pipeline with every clip (segments of the "
             "real recordings in `tests/data`, and rendered `cadenza corpus` clips), once per seed, and measures "
             "the output around the boundary. Band energies are in dB, below 300 Hz / 300-2000 Hz / above 2 kHz, "
             "means over clips and seeds; a jump is the second after the boundary minus the second before it.", ""]
    for run in runs:
        lines.append(f"- **{run['label']}**: `{run['command']}` ({run['summary']['clips']} primed clips of "
                     f"{run['prime_seconds']:g} s continued by {run['new_seconds']:g} s, pipeline "
                     f"`{run['pipeline']}`, {run['machine']['cpu_count']} CPUs, torch {run['machine']['torch']})")
    header = "| measure | " + " | ".join(r["label"] for r in runs) + " |"
    table = [header, "|---|" + "---:|" * len(runs)]
    rows = [
        ("jump at the boundary (dB, low / mid / high)", lambda s: triple(s["jump_db"])),
        ("mean size of that jump, signs ignored", lambda s: triple(s["abs_jump_db"])),
        ("the original recording's jump at the same point", lambda s: triple(s["original_jump_db"])),
        ("... its mean size, signs ignored", lambda s: triple(s["original_abs_jump_db"])),
        ("jump in the tokens' own spectra (no phase recovery)", lambda s: triple(s["tokens_jump_db"])),
        ("second before the boundary minus the pipeline's own level", lambda s: triple(s["before_minus_own_level_db"])),
        ("second after the boundary minus the pipeline's own level", lambda s: triple(s["after_minus_own_level_db"])),
        ("correlation of the jump with the gap from the prime to the pipeline's own level",
         lambda s: triple(s["jump_follows_own_level"], ".2f")),
        ("spectral flux at the seam (dB per mel band)", lambda s: f"{s['flux_seam']:.2f}"),
        ("median flux inside the prime / new part", lambda s: f"{s['flux_prime_median']:.2f} / {s['flux_new_median']:.2f}"),
        ("seam flux percentile among the prime's / new part's", lambda s: f"{s['flux_percentile_in_prime']:.0f} / "
                                                                          f"{s['flux_percentile_in_new']:.0f}"),
        ("movement of the prime part / the new part", lambda s: f"{s['movement_prime']:.3f} / {s['movement_new']:.3f}"),
        ("prime part vs its codes decoded alone (max dB, any band)", lambda s: f"{s['prime_vs_decoded_alone_db_max']:.2f}"),
        ("chunked vs one whole decode around the seam (max dB)", lambda s: f"{s['chunked_vs_whole_decode_db_max']:.2f}"),
        ("output peak vs the decoded tokens' peak (max dB: a gain, or clipping)",
         lambda s: f"{s['output_gain_db_max']:.2f}"),
    ]
    for name, cell in rows:
        table.append(f"| {name} | " + " | ".join(cell(r["summary"]) for r in runs) + " |")
    reading = ("Reading: a jump the original recording does not make at the same point is the seam's. When the "
               "tokens' own spectra jump as much, the stages made it, not the decoder; the last rows check the "
               "decoder (the prime decoded with and without what follows it, chunked and whole decodes) and the "
               "level (a continuation gets no gain, so what that row shows is clipping of decoded peaks above full "
               "scale). The correlation row says where the new part goes: near 1, to the pipeline's own level for "
               "the prompt, whatever the prime's level was. Movement is one minus the cosine similarity of mel "
               "spectra half a second apart (about 0.2-0.4 for changing notes, near 0 for a held chord): a seam "
               "smoothed over by music that stops moving would show there.")
    lines += ["", *table, "", reading, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
