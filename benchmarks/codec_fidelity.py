"""Codec fidelity of ``spectral-codec`` variants: do decoded clips keep the attributes a prompt asks for?

Why: the default pipeline must run offline, so its codec is a spectral codec whose codebooks
are fitted by k-means, and its settings (frame rate, bins, codebooks, Griffin-Lim iterations)
are chosen here by measurement. A codec is good enough when the attribute estimators (the
``attributes`` metric: tempo class, key, mode, register, dynamics, drums; plus ``instrument``
when that metric is installed) say the same about a decoded clip as about its original, and
when it sounds like music (mel distance, spectrogram pictures). SI-SDR is reported too; it
measures the waveform, which Griffin-Lim does not try to keep (its phase is rebuilt).

For every variant the codebooks are fitted (as ``cadenza fit-kmeans --component tokenizer``
does: same residual k-means) on the corpus's train clips, and the corpus's test clips are
encoded and decoded. Variants differing only in decode settings share one fit. Two reference
rows frame the results: the default analysis decoded without quantisation (the Griffin-Lim
ceiling), and the default with random codebooks (the floor).

    python benchmarks/codec_fidelity.py --corpus CORPUS   # an existing `cadenza corpus` folder
    python benchmarks/codec_fidelity.py                   # renders 240 clips x 5 s (seed 1) first
    python benchmarks/codec_fidelity.py --quick           # 24 clips x 3 s, two variants, temp folder

Writes docs/benchmarks/codec_fidelity.{json,md} (or ``--out-dir``) atomically, and spectrogram
PNGs (original vs decoded with the default settings) in docs/benchmarks/codec_fidelity/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import attrs
import numpy as np
import torch
from recording import command_line, load_average, machine_info, write_results

from cadenza.core.files.atomic import atomic_path
from cadenza.core.audio.io import load_audio, resample
from cadenza.plugins.workflows.fit_kmeans.command import Reservoir, fit_codec_codebooks
from cadenza.core.errors import CadenzaError
from cadenza.plugins.evaluation.fidelity import log_mel, mel_distance, si_sdr
from cadenza.plugins.spectral_codec.model import SpectralCodec
from cadenza.plugins.spectral_codec import DECODE_FIELDS, SpectralCodecConfig, hifigan_config
from cadenza.registry import discover

ROOT = Path(__file__).resolve().parents[1]
ATTRIBUTES = ("tempo_class", "key", "mode", "register", "dynamics", "drums")
DEFAULT = SpectralCodecConfig()
# The analysis the universal HiFi-GAN voices, as the codec config defines it
HIFIGAN = {name: getattr(hifigan_config(), name)
           for name in ("sample_rate", "frame_rate", "subframes", "n_fft", "scale", "n_mels", "vocoder")}
# (label, params overriding the defaults): one axis changed at a time around the default.
VARIANTS = [
    ("default", {}),
    ("mel 80, 2 subframes", {"n_mels": 80, "subframes": 2}),
    ("mel 128, 2 subframes", {"n_mels": 128, "subframes": 2}),
    ("mel 256, 2 subframes", {"subframes": 2}),
    ("linear 513 bins", {"scale": "linear"}),
    ("25 frames/s, 2 subframes", {"frame_rate": 25.0, "subframes": 2}),
    ("25 frames/s, 4 subframes", {"frame_rate": 25.0, "subframes": 4}),
    ("4 codebooks", {"num_codebooks": 4}),
    ("8 x 256 codewords", {"codebook_size": 256}),
    # the default pipeline's codec (4 x 1024, 200 tokens/s) and smaller targets with it
    ("4 x 1024 (default pipeline)", {"num_codebooks": 4}),
    ("mel 80, 4 codebooks", {"n_mels": 80, "num_codebooks": 4}),
    ("mel 128, 4 codebooks", {"n_mels": 128, "num_codebooks": 4}),
    ("mel 80, 8 codebooks", {"n_mels": 80}),
    ("mel 128, 8 codebooks", {"n_mels": 128}),
    # product quantisation: each band of bins its own residual codebooks (codebook q: band q % groups)
    ("mel 256, 4 bands x 1", {"groups": 4, "num_codebooks": 4}),
    ("mel 256, 4 bands x 2", {"groups": 4}),
    ("mel 256, 8 bands x 1", {"groups": 8}),
    ("mel 128, 4 bands x 1", {"n_mels": 128, "groups": 4, "num_codebooks": 4}),
    ("mel 128, 4 bands x 2", {"n_mels": 128, "groups": 4}),
    ("mel 128, 8 bands x 1", {"n_mels": 128, "groups": 8}),
    ("mel 80, 4 bands x 2", {"n_mels": 80, "groups": 4}),
    ("mel 80, 8 bands x 1", {"n_mels": 80, "groups": 8}),
    ("mel 128, 25 frames/s x 2, 8 bands", {"n_mels": 128, "groups": 8, "frame_rate": 25.0, "subframes": 2}),
    ("mel 128, 25 frames/s x 2, 4 bands x 2", {"n_mels": 128, "groups": 4, "frame_rate": 25.0, "subframes": 2}),
    # the pretrained universal HiFi-GAN as decoder (cadenza[hifigan]): its own analysis, 22.05 kHz, 80 mels
    ("HiFi-GAN mel 80, 4 bands x 2", {**HIFIGAN, "groups": 4}),
    ("HiFi-GAN mel 80, 8 bands x 1", {**HIFIGAN, "groups": 8}),
    ("GL 8 iterations", {"griffin_lim_iters": 8}),
    ("GL 32 iterations", {"griffin_lim_iters": 32}),
    ("GL 64 iterations", {"griffin_lim_iters": 64}),
]
QUICK_VARIANTS = ["default", "GL 8 iterations"]


def records(corpus: Path, split: str, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in (corpus / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def clip(corpus: Path, record: dict, rate: int) -> torch.Tensor:
    audio, source_rate = load_audio(corpus / record["audio"])
    if source_rate != rate:
        raise CadenzaError(f"{record['audio']}: {source_rate} Hz, the codec runs at {rate} Hz")
    return audio


def fit_key(config: SpectralCodecConfig) -> SpectralCodecConfig:
    """The part of a config the codebooks depend on (decode settings at their defaults). The number
    of codebooks is left out too: residual fitting is greedy, so the first Q codebooks of a fit of
    8 are exactly a fit of Q (same frames, same seeds)."""
    fixed = {name: getattr(DEFAULT, name) for name in DECODE_FIELDS}
    return attrs.evolve(config, num_codebooks=max(DEFAULT.num_codebooks, config.num_codebooks), **fixed)


def fit(config: SpectralCodecConfig, train: list[torch.Tensor], max_frames: int, epochs: int, rate: int) -> tuple:
    """Codebooks fitted on the train clips (at ``rate``); returns (codec, seconds, frames used)."""
    codec = SpectralCodec(config)
    reservoir = Reservoir(max_frames, seed=0)
    started = time.perf_counter()
    for audio in train:
        reservoir.add(codec.features(audio[None], sample_rate=rate)[0])
    books = fit_codec_codebooks(codec, reservoir.rows, config.num_codebooks, config.codebook_size, batch_size=4096,
                                epochs=epochs, seed=0)
    return codec.with_codebooks(books), time.perf_counter() - started, len(reservoir.rows)


class Judge:
    """The estimators' labels of each original test clip, and agreement of decoded clips with them."""

    def __init__(self, test: list[torch.Tensor], rows: list[dict], rate: int):
        registry = discover(environ={"CADENZA_LOAD_PLUGINS": "cadenza"})
        entry = registry.get("metric", "attributes")
        # The instrument is judged by its own metric below (the register is given the true family).
        fields = {f.name for f in attrs.fields(entry.config)}
        self.metric = entry.build(entry.config(**({"classify_instrument": False}
                                                  if "classify_instrument" in fields else {})))
        self.instrument, self.instrument_note = None, "compared with the `instrument` metric"
        try:
            inst = registry.get("metric", "instrument")
            self.instrument = inst.build(inst.config())
            self.instrument(test[0], sample_rate=rate)
        except (CadenzaError, KeyError, LookupError) as exc:
            self.instrument = None
            self.instrument_note = f"not compared: the `instrument` metric is unavailable here ({exc})"
        self.rows, self.rate = rows, rate
        self.names = list(ATTRIBUTES) + (["instrument"] if self.instrument is not None else [])
        self.original = [self.labels(audio, row) for audio, row in zip(test, rows)]

    def labels(self, audio: torch.Tensor, row: dict) -> dict[str, str]:
        out = self.metric(audio, sample_rate=self.rate, instrument=row["instrument"])
        labels = {name: str(out[name]) for name in ATTRIBUTES}
        if self.instrument is not None:
            labels["instrument"] = str(self.instrument(audio, sample_rate=self.rate).get("instrument"))
        return labels

    def truth(self, labels: dict[str, str], row: dict) -> dict[str, bool]:
        """Labels against the corpus's own (the estimators' accuracy, for context)."""
        expected = {**{name: str(row.get(name)) for name in self.names},
                    "drums": "none" if row.get("drums") == "none" else "yes"}
        return {name: labels[name] == expected[name] for name in self.names}


def evaluate(codec: SpectralCodec, test: list[torch.Tensor], judge: Judge, quantise: bool = True) -> dict:
    """Encode/decode every test clip; agreement, fidelity and speed."""
    agree = {name: [] for name in judge.names}
    right = {name: [] for name in judge.names}
    mel, sdr, enc_x, dec_x, decoded_clips = [], [], [], [], []
    for audio, row, original in zip(test, judge.rows, judge.original):
        seconds = audio.shape[-1] / judge.rate
        source = resample(audio[None], judge.rate, codec.info.sample_rate)  # a HiFi-GAN codec runs at 22.05 kHz
        started = time.perf_counter()
        if quantise:
            codes = codec.encode(source)
            encoded = time.perf_counter()
            decoded = codec.decode(codes)[0]
        else:
            values = codec.features(source)
            encoded = time.perf_counter()
            decoded = codec.synthesize(values)[0]
        done = time.perf_counter()
        enc_x.append(seconds / max(encoded - started, 1e-9))
        dec_x.append(seconds / max(done - encoded, 1e-9))
        decoded = resample(decoded[None], codec.info.sample_rate, judge.rate)[0][..., : audio.shape[-1]]
        decoded_clips.append(decoded)
        labels = judge.labels(decoded, row)
        for name in judge.names:
            agree[name].append(labels[name] == original[name])
        for name, ok in judge.truth(labels, row).items():
            right[name].append(ok)
        mel.append(mel_distance(audio, decoded, judge.rate))
        sdr.append(si_sdr(audio, decoded))
    agreement = {name: float(np.mean(v)) for name, v in agree.items()}
    # The mean is over the six attribute estimators; the instrument column (a trained classifier,
    # when installed) is reported beside it, not in it, so rows stay comparable with and without it.
    return {"agreement": agreement, "mean_agreement": float(np.mean([agreement[name] for name in ATTRIBUTES])),
            "label_accuracy": {name: float(np.mean(v)) for name, v in right.items()},
            "mel_distance": float(np.mean(mel)), "si_sdr_db": float(np.mean(sdr)),
            "encode_x_realtime": statistics.median(enc_x), "decode_x_realtime": statistics.median(dec_x),
            "_decoded": decoded_clips}


def decode_10s_seconds(codec: SpectralCodec, test: list[torch.Tensor], rate: int,
                       repeats: int = 3) -> tuple[float, float]:
    """Wall and CPU seconds to decode the codes of 10 s of test audio (at ``rate``; medians of
    ``repeats``): the cascade's last step. CPU time is what the decode costs; wall time also counts
    other jobs' load."""
    audio = torch.cat(test, dim=-1)[..., : 10 * rate]
    codes = codec.encode(resample(audio[None], rate, codec.info.sample_rate))
    wall, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        codec.decode(codes)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def describe(config: SpectralCodecConfig) -> dict:
    bins = f"mel {config.n_mels}" if config.scale == "mel" else f"linear {config.bins}"
    if config.groups > 1:
        bins += f" in {config.groups} bands"
    return {"frame_rate": config.frame_rate, "subframes": config.subframes, "stft_hop": config.stft_hop,
            "n_fft": config.n_fft, "bins": bins, "dim": config.dim, "groups": config.groups,
            "codebooks": config.num_codebooks,
            "codebook_size": config.codebook_size, "griffin_lim_iters": config.griffin_lim_iters,
            "vocoder": config.vocoder, "sample_rate": config.sample_rate,
            "tokens_per_second": config.frame_rate * config.num_codebooks,
            "weights_mb": round(config.num_codebooks * config.codebook_size * config.band_dim * 4 / 2**20, 2)}


def spectrograms(out: Path, originals: list[torch.Tensor], decoded: dict[str, list[torch.Tensor]],
                 rows: list[dict], rate: int, count: int) -> list[str]:
    """One PNG per clip: log-mel of the original and of each decoding, same colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(min(count, len(originals))):
        panels = [("original", originals[i])] + [(label, clips[i]) for label, clips in decoded.items()]
        fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), sharex=True)
        for ax, (label, audio) in zip(axes, panels):
            image = log_mel(audio.double().mean(0, keepdim=True), rate, 0.0464)[0].numpy()
            ax.imshow(image, origin="lower", aspect="auto", vmin=-5, vmax=1, cmap="magma",
                      extent=(0, audio.shape[-1] / rate, 0, image.shape[0]))
            ax.set_ylabel("mel band")
            ax.set_title(label, fontsize=9)
        axes[-1].set_xlabel("seconds")
        fig.suptitle(rows[i]["caption"][:110], fontsize=9)
        fig.tight_layout()
        name = f"clip_{rows[i]['id']}.png"
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, dpi=80, format="png")
        plt.close(fig)
        written.append(name)
    return written


SAME_CLIPS = ("corpus", "train_clips", "test_clips", "fit_frames", "epochs", "original_accuracy")


def merge_earlier(path: Path, result: dict) -> dict:
    """Keep the rows of the earlier run recorded at ``path`` that this run did not measure, so an
    ablation grows a few variants at a time (each run of all variants takes most of an hour here).
    Only a run on the very same clips and fits qualifies; each kept row records its own command."""
    if not path.exists():
        return result
    earlier = json.loads(path.read_text())
    differs = [k for k in SAME_CLIPS if earlier.get(k) != result[k]]
    if differs:
        raise SystemExit(f"codec_fidelity: --merge: {path} was measured on other clips ({', '.join(differs)} differ)")
    measured = {row["label"] for row in result["variants"]}
    kept = [{**row, "command": row.get("command", earlier["command"])}
            for row in earlier["variants"] if row["label"] not in measured]
    rows = result["variants"] + kept
    chosen, rule = choose(rows)
    return {**result, "variants": rows, "chosen": chosen, "choice_rule": rule}


def markdown(result: dict) -> str:
    rows = result["variants"]
    names = result["attributes"]
    lines = [
        "# Codec fidelity: spectral-codec variants", "",
        (f"Command: `{result['command']}` on {result['machine']['cpu_count']} CPUs (shared; load average at start "
         f"{result['machine']['load_average']}; torch threads {result['machine'].get('threads')}). Corpus: "
         f"{result['corpus']} - codebooks fitted on {result['train_clips']} train clips ({result['fit_frames']} "
         f"frames at most per fit, {result['epochs']} k-means epochs per codebook), measured on "
         f"{result['test_clips']} held-out test clips of {result['clip_seconds']:g} s."), "",
        ("Agreement: share of test clips where the estimators give the decoded clip the same label as the original. "
        "Mel distance: multi-resolution log10-mel L1 (`cadenza.plugins.evaluation.fidelity`, lower is better). SI-SDR: "
        "waveform match in dB (Griffin-Lim rebuilds phase, so it is expected to be far below 0 dB). Speeds are x "
        "real time on one clip (median, wall clock); `decode 10 s` is seconds to decode 10 s of codes, wall clock and "
        "(in brackets) CPU time of this process, which other jobs on the shared machine do not inflate."), "",
        "| variant | frames/s x codebooks (tokens/s) | bins x subframes | codewords | decoder | "
        + " | ".join(names) + " | mean agreement (6 attributes) | mel distance | SI-SDR dB | encode x RT | decode x RT | "
        "decode 10 s, s (CPU s) | weights MB | fit s |",
        "|---|---|---|---:|---:|" + "---:|" * len(names) + "---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        d = row["config"]
        agreement = " | ".join(f"{100 * row['agreement'][n]:.0f}%" for n in names)
        mark = (" **(chosen)**" if row["label"] == result["chosen"] else "") + (" *" if "command" in row else "")
        lines.append(
            f"| {row['label']}{mark} | {d['frame_rate']:g} x {d['codebooks']} ({d['tokens_per_second']:g}) | "
            f"{d['bins']} x {d['subframes']} | {d['codebook_size']} | {decoder(d)} | {agreement} | "
            f"{100 * row['mean_agreement']:.1f}% | {row['mel_distance']:.3f} | {row['si_sdr_db']:.1f} | "
            f"{row['encode_x_realtime']:.0f} | {row['decode_x_realtime']:.1f} | "
            f"{row['decode_10s_seconds']:.2f} ({row['decode_10s_cpu_seconds']:.2f}) | "
            f"{d['weights_mb'] if row.get('fit_seconds') is not None else '-'} | "
            f"{row['fit_seconds'] if row.get('fit_seconds') is not None else '-'} |")
    earlier = sorted({row["command"] for row in rows if "command" in row})
    if earlier:
        lines += ["", "\\* measured in an earlier run on the same clips and fits: " + "; ".join(f"`{c}`" for c in earlier)]
    lines += ["", ("Estimators against the corpus labels on the same test clips (their accuracy; context for the "
                   "agreement above):"), "",
              "| audio | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names),
              "| original | " + " | ".join(f"{100 * result['original_accuracy'][n]:.0f}%" for n in names) + " |"]
    for row in rows:
        lines.append(f"| {row['label']} | " + " | ".join(f"{100 * row['label_accuracy'][n]:.0f}%" for n in names)
                     + " |")
    lines += ["", f"Chosen: **{result['chosen']}** - {result['choice_rule']}", "",
              f"Instrument: {result['instrument_note']}.", ""]
    if result["spectrograms"]:  # inline images, so the page shows them where it is read
        lines += ["Spectrograms (log-mel, original then decodings):", ""]
        for p in result["spectrograms"]:
            lines += [f"![Log-mel spectrograms of test clip {p.removesuffix('.png')}: the original, then each "
                      f"variant's decoding](codec_fidelity/{p})", ""]
    return "\n".join(lines)


def decoder(described: dict) -> str:
    """``GL 16`` (Griffin-Lim and its iterations) or ``HiFi-GAN`` (rows recorded before it: Griffin-Lim)."""
    if described.get("vocoder", "griffin-lim") == "hifigan":
        return "HiFi-GAN"
    return f"GL {described['griffin_lim_iters']}"


def choose(rows: list[dict]) -> tuple[str, str]:
    """The rule: among fitted variants whose 10 s decode fits in 3 s (a tenth of the 30 s budget) and
    that emit at most 400 tokens/s, the highest mean agreement; ties (within 1 point) to fewer tokens/s,
    then lower mel distance."""
    rule = ("highest mean agreement among variants emitting <= 400 tokens/s whose 10 s decode takes <= 3 CPU s; "
            "within 1 point, fewer tokens/s, then lower mel distance, wins")
    fitted = [r for r in rows if r.get("fit_seconds") is not None and r["decode_10s_cpu_seconds"] <= 3.0
              and r["config"]["tokens_per_second"] <= 400]
    if not fitted:
        return "none", rule
    best = max(r["mean_agreement"] for r in fitted)
    close = [r for r in fitted if r["mean_agreement"] >= best - 0.01]
    pick = min(close, key=lambda r: (r["config"]["tokens_per_second"], r["mel_distance"]))
    return pick["label"], rule


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None, help="an existing `cadenza corpus` folder")
    parser.add_argument("--n", type=int, default=240, help="clips to render when no --corpus (default: 240)")
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length when rendering (default: 5)")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed when rendering (default: 1)")
    parser.add_argument("--train", type=int, default=None, help="use only the first N train clips")
    parser.add_argument("--test", type=int, default=None, help="use only the first N test clips")
    parser.add_argument("--max-frames", type=int, default=60000, help="frames per codebook fit (default: 60000)")
    parser.add_argument("--epochs", type=int, default=5, help="k-means epochs per codebook (default: 5)")
    parser.add_argument("--only", action="append", default=None, metavar="LABEL", help="run only this variant")
    parser.add_argument("--pictures", type=int, default=3, help="spectrogram PNGs to write (default: 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default: 1; more threads on a busy shared machine run far slower)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="also measure this codebook file (e.g. the packaged one) on the test clips")
    parser.add_argument("--quick", action="store_true", help="24 clips x 3 s, two variants, temporary output")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: docs/benchmarks")
    parser.add_argument("--merge", type=Path, default=None, metavar="JSON",
                        help="keep the rows of this earlier result (same clips) that this run does not measure")
    args = parser.parse_args(argv)
    load_at_start = load_average()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out_dir or (Path(tmp) / "out" if args.quick else ROOT / "docs" / "benchmarks")
        corpus = args.corpus
        if corpus is None:
            from cadenza.plugins.workflows.corpus.build import Settings, build

            corpus = Path(tmp) / "corpus"
            n, seconds = (24, 3.0) if args.quick else (args.n, args.seconds)
            build(corpus, n, Settings(seed=args.seed, seconds=seconds), progress=False)
            corpus_note = f"rendered `cadenza corpus --n {n} --seconds {seconds:g} --seed {args.seed}`"
        else:
            header = json.loads((corpus / "corpus.json").read_text())
            corpus_note = (f"`{corpus.name}` (`cadenza corpus`, seed {header.get('seed')}, "
                           f"{header.get('seconds')} s clips)")
        labels = args.only or (QUICK_VARIANTS if args.quick else [label for label, _ in VARIANTS])
        unknown = sorted(set(labels) - {label for label, _ in VARIANTS})
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; known: {[label for label, _ in VARIANTS]}")
        rate = DEFAULT.sample_rate
        train_rows, test_rows = records(corpus, "train", args.train), records(corpus, "test", args.test)
        train = [clip(corpus, r, rate) for r in train_rows]
        test = [clip(corpus, r, rate) for r in test_rows]
        judge = Judge(test, test_rows, rate)
        original_accuracy = {n: float(np.mean([judge.truth(o, r)[n] for o, r in zip(judge.original, test_rows)]))
                             for n in judge.names}

        fitted: dict[SpectralCodecConfig, tuple] = {}
        rows, decoded = [], {}
        plan = [(label, attrs.evolve(DEFAULT, **params), True) for label, params in VARIANTS if label in labels]
        plan += [("unquantised (GL ceiling)", DEFAULT, False), ("random codebooks", DEFAULT, None)]
        if any(label.startswith("HiFi-GAN") for label in labels):
            plan.append(("unquantised (HiFi-GAN ceiling)", attrs.evolve(DEFAULT, **HIFIGAN), False))
        if args.weights is not None:
            plan.append((f"file {args.weights.name}", None, "file"))
        for label, config, mode in plan:
            fit_seconds = fit_frames = None
            if mode == "file":
                from cadenza.core.components import BuildContext
                from cadenza.core.engine.weights import parse_weights
                from cadenza.plugins.spectral_codec.model import build

                codec = build(DEFAULT, BuildContext(weights=parse_weights(str(args.weights.resolve()))))
                config = codec.config
            elif mode is None:
                codec = SpectralCodec(config)
            else:
                key = fit_key(config)
                if key not in fitted:
                    fitted[key] = fit(key, train, args.max_frames, args.epochs, rate)
                base, fit_seconds, fit_frames = fitted[key]
                codec = SpectralCodec(config, base.codebooks[: config.num_codebooks])
                if mode is False:
                    fit_seconds = None
            result = evaluate(codec, test, judge, quantise=mode is not False)
            clips = result.pop("_decoded")
            if label in ("default", "random codebooks", "unquantised (GL ceiling)", "unquantised (HiFi-GAN ceiling)") \
                    or mode == "file":
                decoded[label] = clips
            wall, cpu = decode_10s_seconds(codec, test, rate)
            row = {"label": label, "config": describe(config), **result,
                   "decode_10s_seconds": wall, "decode_10s_cpu_seconds": cpu,
                   "fit_seconds": None if fit_seconds is None or mode is False else round(fit_seconds, 1),
                   "fit_frames": fit_frames}
            rows.append(row)
            print(f"{label:28s} mean agreement {100 * row['mean_agreement']:5.1f}%  mel {row['mel_distance']:.3f}  "
                  f"SI-SDR {row['si_sdr_db']:6.1f}  decode 10 s {wall:.2f} s ({cpu:.2f} s CPU)", flush=True)
        chosen, rule = choose(rows)
        pictures = spectrograms(out_dir / "codec_fidelity", test, decoded, test_rows, rate, args.pictures)
        result = {"command": command_line(argv), "machine": machine_info(load_at_start), "corpus": corpus_note,
                  "train_clips": len(train), "test_clips": len(test), "fit_frames": args.max_frames,
                  "epochs": args.epochs, "clip_seconds": test[0].shape[-1] / rate if test else 0,
                  "attributes": judge.names, "instrument_note": judge.instrument_note,
                  "original_accuracy": original_accuracy, "variants": rows, "chosen": chosen, "choice_rule": rule,
                  "spectrograms": pictures}
        if args.merge is not None:
            result = merge_earlier(args.merge, result)
        write_results(out_dir, "codec_fidelity", result, markdown(result))
        print(f"wrote {out_dir / 'codec_fidelity.md'}; chosen: {result['chosen']}")


if __name__ == "__main__":
    main()
