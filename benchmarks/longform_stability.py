"""Long-form stability: do tempo and key hold across the windows of a long generation?

Why: long-form generation continues each window from the tail of the last; a piece that
drifts (tempo halves, the key wanders) sounds stitched even without audible seams. This
generates long clips with a pipeline (the bundled `default` unless told otherwise) for a few
seeds, each with piece memory off and at the strengths asked for (``--hold``, default: off and
the spec's ``output.hold``; see core/steering/piece_memory.py) and with the beat grid at each
``--beat`` scale (default: off and the spec's ``output.beat``; core/steering/beat_grid.py), cuts
each into 30 s segments,
runs the corpus attribute estimators on each, and reports how many segments agree with the
piece's most common tempo class, key and mode (and key from the pitch profile alone,
without the estimator's opening-bass bonus, which is arbitrary mid-piece). With the ``music-features`` semantic tokenizer,
whose centroids carry a chroma block, it also reads the key of each segment's *semantic
tokens* (their centroids' summed chroma, against the same key profiles): when the semantic
stream holds its key and the audio does not, the acoustic stages are what drift. The
estimators' own accuracy
(docs/benchmarks/estimator_accuracy.md) bounds what "agree" can mean. Because a memory that
held the key by freezing the music would score perfectly, it also reports how many distinct
semantic tokens each 10 s of the piece uses after its opening window, next to the opening's,
and how much the sound moves: one minus the cosine similarity of mel spectra half a second
apart (level removed), per segment and for the first 10 s. A frozen drone scores near 0.
The same measures on pieces ``cadenza corpus`` renders at the same length (``--reference``),
each with one tempo and one key throughout, show what the estimators can report for a piece
that does not drift: the ceiling of the generated rows.

    python benchmarks/longform_stability.py                    # 180 s, seeds 0-2 -> docs/benchmarks/
    python benchmarks/longform_stability.py --seconds 60 --segment 20 --seeds 0 --out-dir scratch   # quicker
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections import Counter
from pathlib import Path

PROMPT = "a calm piano piece in D minor at a medium tempo, soft, no drums"
FIELDS = ("tempo_class", "key", "mode")
BPM_TOLERANCE = 0.08  # a segment's tempo is the piece's when within 8% of the piece's median BPM


def semantic_chroma(cascade):
    """``[V, 12]`` chroma of each semantic token (its centroid's chroma block), or None when the
    semantic tokenizer is not ``music-features``."""
    component = cascade.pipeline.semantic_tokenizer
    if component is None or component.entry.name != "music-features":
        return None
    from cadenza.plugins.music_features import CHROMA

    return cascade.semantic_tokenizer.centroids[:, CHROMA[0]:CHROMA[1]].double().cpu().numpy()


def key_of_chroma(profile) -> str:
    """The best key ("G major") of a 12-bin profile by the estimators' default key profiles."""
    from cadenza.plugins.estimators.model import PROFILES, best_key, key_scores

    key, mode, _ = best_key(key_scores(profile, *PROFILES["albrecht-shanahan"]))
    return f"{key} {mode}"


def movement(audio, rate: int, lag_seconds: float = 0.5) -> float:
    """How much ``[C, S]`` audio's spectrum changes: 1 - the mean cosine similarity of its
    mel-dB frames (each minus its mean over bands, so loudness alone does not count) with the
    frame ``lag_seconds`` later. About 0.2-0.4 for a clip with notes, near 0 for a held chord."""
    import numpy as np

    from cadenza.core.audio.plot import mel_spectrogram_db

    db, hop, _ = mel_spectrogram_db(audio, rate)
    x = db - db.mean(axis=0, keepdims=True)
    lag = max(1, round(lag_seconds / hop))
    a, b = x[:, :-lag], x[:, lag:]
    cosine = (a * b).sum(axis=0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0) + 1e-9)
    return round(float(1 - cosine.mean()), 3)


def measured_segments(audio, rate: int, segment: float, metric) -> list[dict]:
    """The estimators' view of each ``segment``-second piece of ``[C, S]`` audio."""
    from cadenza.plugins.estimators.model import Analysis, estimate_key

    step = round(segment * rate)
    segments = []
    for k, begin in enumerate(range(0, audio.shape[-1] - step + 1, step)):
        piece = audio[:, begin:begin + step]
        measured = metric(piece, sample_rate=rate)
        profile = estimate_key(Analysis.of(piece.numpy(), rate), opening_weight=0.0)
        segments.append({"segment": k, "start_s": begin / rate, "bpm": round(float(measured["bpm"]), 1),
                         "tempo_class": measured["tempo_class"], "key": measured["key"], "mode": measured["mode"],
                         "movement": movement(piece, rate), "profile_key": f"{profile['key']} {profile['mode']}"})
    return segments


def agreement_of(segments: list[dict], fields) -> dict:
    """Per field: the most common value over the segments and the share that has it; for
    ``bpm``, the median tempo and the share of segments within :data:`BPM_TOLERANCE` of it
    (a tempo class hides a drift from 95 to 110 BPM and splits 88 from 92)."""
    out = {}
    for field in fields:
        value, count = Counter(s[field] for s in segments).most_common(1)[0]
        out[field] = {"most_common": value, "share": round(count / len(segments), 3)}
    tempi = [s["bpm"] for s in segments if math.isfinite(s["bpm"])]
    if tempi:
        median = statistics.median(tempi)
        steady = sum(abs(bpm / median - 1) <= BPM_TOLERANCE for bpm in tempi)
        out["bpm"] = {"median": round(median, 1), "share": round(steady / len(segments), 3)}
    return out


def pulse_of(generation) -> dict | None:
    """The pulse the beat grid held in row 0 (what its steering recorded, less its strength); None: no grid."""
    beat = generation.steering[0].get("beat") if generation.steering else None
    return None if beat is None else {k: v for k, v in beat.items() if k != "strength"}


def measure(cascade, metric, prompt: str, seconds: float, segment: float, seed: int, hold: float,
            beat: float = 0.0) -> dict:
    """One generation: its segments, their agreement, and the semantic tokens used per window."""
    chroma = semantic_chroma(cascade)
    started = time.perf_counter()
    generation = cascade.generate([prompt], seconds=seconds, seed=seed,
                                  steering=cascade.steering(hold=hold, beat=beat))
    wall = time.perf_counter() - started
    rate, audio = generation.sample_rate, generation.audio[0]
    segments = measured_segments(audio, rate, segment, metric)
    if chroma is not None:
        sem_rate = cascade.frame_rates["semantic"]
        for s in segments:
            span = slice(round(s["start_s"] * sem_rate), round((s["start_s"] + segment) * sem_rate))
            ids = generation.tokens["semantic"][0, 0, span]
            s["semantic_key"] = key_of_chroma(chroma[ids.cpu().numpy()].sum(axis=0))
    agreement = agreement_of(segments, FIELDS + ("profile_key",) + (("semantic_key",) if chroma is not None else ()))
    variety = None
    if "semantic" in generation.tokens:
        ids, per = generation.tokens["semantic"][0, 0], round(10 * cascade.frame_rates["semantic"])
        counts = [len(set(ids[a:a + per].tolist())) for a in range(0, ids.shape[0] - per + 1, per)]
        if counts:
            variety = {"opening": counts[0], "later_mean": round(statistics.fmean(counts[1:]), 1) if counts[1:] else None}
    opening = movement(audio[:, :round(min(10.0, seconds) * rate)], rate)
    return {"seed": seed, "hold": hold, "beat": beat, "pulse": pulse_of(generation),
            "windows": len(generation.windows) or 1, "wall_s": round(wall, 1),
            "movement_first_10s": opening,
            "segments": segments, "agreement": agreement, "semantic_ids_per_10s": variety}


def rendered_corpus(count: int, seconds: float, seed: int):
    """Yield ``(manifest row, audio [C, S], rate)`` for ``count`` clips that ``cadenza corpus``
    renders at ``seconds`` long into a temporary folder (gone once the loop ends)."""
    import json
    import tempfile

    from cadenza.core.audio.io import load_audio
    from cadenza.plugins.workflows.corpus.build import Settings, build

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "corpus"
        build(folder, count, Settings(seed=seed, seconds=seconds), progress=False)
        for line in (folder / "manifest.jsonl").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                yield (row, *load_audio(folder / row["audio"]))


def corpus_pieces(count: int, seconds: float, segment: float, metric, seed: int = 2026) -> list[dict]:
    """The same measures on ``count`` pieces that ``cadenza corpus`` renders at ``seconds`` long:
    each keeps one tempo and one key throughout, so their agreement is what the estimators can
    show for a piece that does not drift (the ceiling of the generated rows)."""
    runs = []
    for k, (row, audio, rate) in enumerate(rendered_corpus(count, seconds, seed)):
        segments = measured_segments(audio, rate, segment, metric)
        runs.append({"seed": k, "hold": None, "beat": None, "caption": row["caption"], "segments": segments,
                     "agreement": agreement_of(segments, FIELDS + ("profile_key",)),
                     "movement_first_10s": movement(audio[:, :round(min(10.0, seconds) * rate)], rate),
                     "semantic_ids_per_10s": None})
    return runs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--segment", type=float, default=30.0, help="seconds per measured segment")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument("--hold", type=float, action="append", default=None,
                        help="piece-memory strength to run, repeatable (default: 0 and the spec's output.hold)")
    parser.add_argument("--beat", type=float, action="append", default=None,
                        help="beat-grid scale to run, repeatable (default: 0 and the spec's output.beat)")
    parser.add_argument("--reference", type=int, default=6, metavar="N",
                        help="corpus pieces of the same length to measure as the ceiling (default: 6; 0: none)")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks")
    args = parser.parse_args(argv)

    from recording import command_line, load_average, machine_info, write_results

    from cadenza.core.engine.cascade import Cascade
    from cadenza.registry import get_registry

    load = load_average()
    registry = get_registry()
    cascade = Cascade.from_spec(args.pipeline, registry)
    entry = registry.get("metric", "attributes")
    metric = entry.build(entry.config())
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    holds = args.hold if args.hold else sorted({0.0, cascade.pipeline.spec.output.hold})
    beats = args.beat if args.beat else sorted({0.0, cascade.pipeline.spec.output.beat})
    settings = [(hold, beat) for hold in holds for beat in beats]
    runs = [measure(cascade, metric, args.prompt, args.seconds, args.segment, seed, hold, beat)
            for hold, beat in settings for seed in seeds]
    reference = corpus_pieces(args.reference, args.seconds, args.segment, metric) if args.reference else []
    summary = [summarise([r for r in runs if (r["hold"], r["beat"]) == pair]) for pair in settings]
    if reference:
        summary.append(summarise(reference))
    result = {"command": command_line(argv), "pipeline": args.pipeline, "prompt": args.prompt,
              "seconds": args.seconds, "segment_seconds": args.segment, "seeds": seeds, "holds": holds, "beats": beats,
              "summary": summary, "runs": runs, "reference": reference, "machine": machine_info(load)}
    write_results(args.out_dir, "longform_stability", result, markdown(result))
    print(markdown(result))
    return result


def summarise(mine: list[dict]) -> dict:
    """Means over the runs of one setting (hold and beat None: the corpus pieces)."""
    later = [r["semantic_ids_per_10s"]["later_mean"] for r in mine
             if r["semantic_ids_per_10s"] and r["semantic_ids_per_10s"]["later_mean"] is not None]
    fields = [f for f in ("bpm",) + FIELDS + ("profile_key", "semantic_key") if all(f in r["agreement"] for r in mine)]
    return {"hold": mine[0]["hold"], "beat": mine[0]["beat"],
            **{field: round(statistics.fmean(r["agreement"][field]["share"] for r in mine), 3) for field in fields},
            "semantic_ids_per_10s_later": round(statistics.fmean(later), 1) if later else None,
            "movement_first_10s": round(statistics.fmean(r["movement_first_10s"] for r in mine), 3),
            "movement_after_first_segment": round(statistics.fmean(
                s["movement"] for r in mine for s in r["segments"][1:]), 3) if len(mine[0]["segments"]) > 1 else None}


def _or_dash(value, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def setting(run: dict) -> str:
    """A run's (or summary row's) hold and beat, as the tables name them."""
    return "corpus pieces" if run["hold"] is None else f"hold {run['hold']:g}, beat {run['beat']:g}"


def summary_row(s: dict) -> str:
    """One setting's line of the summary table."""
    name = setting(s)
    cells = [name, _or_dash(s.get("bpm"), ".0%"), f"{s['tempo_class']:.0%}", f"{s['key']:.0%}", f"{s['mode']:.0%}",
             f"{s['profile_key']:.0%}", _or_dash(s.get("semantic_key"), ".0%"),
             _or_dash(s["semantic_ids_per_10s_later"]),
             f"{s['movement_first_10s']} / {_or_dash(s['movement_after_first_segment'])}"]
    return "| " + " | ".join(cells) + " |"


SUMMARY_HEADER = ("| setting | BPM within 8% of the piece's median | tempo class agreement | key agreement | "
                  "mode agreement | key without the opening bass | "
                  "semantic-token key agreement | semantic ids per 10 s after the opening | "
                  "movement: first 10 s / segments after the first |")
RUNS_HEADER = ("| setting | seed | segment | start (s) | BPM | tempo class | key | key without the opening bass | "
               "key of the semantic tokens | movement |")
NOTES = ("Means over the seeds. The key estimator adds a bonus for the bass of a clip's first second (the corpus's "
         "clips start where their song does, on the tonic); a segment cut from the middle of a piece starts "
         "anywhere, so the table also gives the key from the pitch profile alone (the same estimator with "
         "`opening_weight: 0`). The estimators themselves are right on about 87% (tempo class), 69-75% (key) and "
         "83-89% (mode) of rendered clips (docs/benchmarks/estimator_accuracy.md), so full agreement is not "
         "expected even from a perfectly stable piece: the *corpus pieces* row measures rendered pieces of the same "
         "length, each with one tempo and one key throughout, as that ceiling.")


def markdown(result: dict) -> str:
    """The recorded page: the summary per setting, then every run's segments."""
    runs = result["runs"]
    wall = sum(r["wall_s"] for r in runs)
    intro = (f"Command: `{result['command']}`: {result['seconds']:g} s of `{result['pipeline']}` for "
             f"\"{result['prompt']}\", seeds {', '.join(map(str, result['seeds']))}, with piece memory (`hold`) at "
             f"{' and '.join(f'{h:g}' for h in result['holds'])} and the beat grid (`beat`) at "
             f"{' and '.join(f'{b:g}' for b in result.get('beats', [0.0]))} (0: off), "
             f"{runs[0]['windows']} windows each, "
             f"{wall:.0f} s of generation on {result['machine']['cpu_count']} CPUs. The attribute estimators "
             f"measured each {result['segment_seconds']:g} s segment; a run's agreement is the share of its "
             "segments that agree with its most common value.")
    lines = ["# Long-form stability", "", intro, "", SUMMARY_HEADER, "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
             *[summary_row(s) for s in result["summary"]], "", NOTES, "", "## Every run", "", RUNS_HEADER,
             "|---|---:|---:|---:|---:|---|---|---|---|---:|"]
    reference = result.get("reference", [])
    for r in runs + reference:
        lines += [f"| {setting(r)} | {r['seed']} | {s['segment']} | {s['start_s']:.0f} | {s['bpm']} | "
                  f"{s['tempo_class']} | {s['key']} {s['mode']} | {s['profile_key']} | {s.get('semantic_key', '-')} | "
                  f"{s['movement']} |" for s in r["segments"]]
    variety = "; ".join(f"{setting(r)}, seed {r['seed']}: {r['semantic_ids_per_10s']['opening']} / "
                        f"{r['semantic_ids_per_10s']['later_mean']}" for r in runs if r["semantic_ids_per_10s"])
    lines += ["", f"Semantic ids per 10 s (opening window / mean of the later ones): {variety}.", ""]
    pulses = "; ".join(f"{setting(r)}, seed {r['seed']}: {r['pulse']['bpm']:g} BPM (confidence "
                       f"{r['pulse']['confidence']:g})" for r in runs if r.get("pulse"))
    if pulses:
        lines += [f"Tempo the beat grid held, estimated from each piece's opening: {pulses}.", ""]
    if reference:
        lines += ["Corpus pieces (`cadenza corpus` renders of the same length; in the tables, seed is the piece's "
                  "number): " + "; ".join(f"{r['seed']}: \"{r['caption']}\"" for r in reference) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
