"""``cadenza evaluate``: its parser here (imported by ``cadenza --help``, argparse only); its
handler in :mod:`cadenza.plugins.workflows.evaluate.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import DEFAULT_PIPELINE, Command


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ev = sub.add_parser("evaluate", help="generate from labelled prompts and score prompt adherence (and FAD)",
                        description="Generate audio for every line of a labelled prompt file (a `cadenza corpus` "
                        "manifest: caption plus attributes), measure the attributes in the audio with the estimator "
                        "metrics, and report adherence per attribute and overall, also as a share of the estimators' "
                        "ceiling (their accuracy on the reference clips), plus FAD against the reference audio. "
                        "Writes OUT/audio, OUT/scores.jsonl, OUT/summary.json and OUT/summary.md. Resumable.")
    ev.add_argument("--pipeline", "-p", default=DEFAULT_PIPELINE,
                    help=f"spec file or preset to evaluate (default: {DEFAULT_PIPELINE})")
    ev.add_argument("--prompts", required=True, metavar="JSONL",
                    help="labelled prompts: a corpus manifest (e.g. CORPUS/test.jsonl) or lines with a caption or "
                    "prompt plus attribute fields")
    ev.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for audio, scores and the summary")
    ev.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N prompts")
    ev.add_argument("--seeds", type=int, default=1, metavar="K", help="clips per prompt, seeds 0..K-1 (default: 1)")
    ev.add_argument("--seconds", "-s", type=float, default=None,
                    help="length of each clip (default: the reference clips' length, else the spec's)")
    ev.add_argument("--fad-embedding", default="mel-stats", metavar="NAME",
                    help="audio embedding for FAD: 'mel-stats' (no weights), 'conditioner' (the pipeline's own, "
                    "when it embeds audio), or KIND:NAME[@WEIGHTS] of a component that embeds audio; 'none' skips FAD")
    ev.add_argument("--batch-size", type=int, default=8, metavar="N", help="prompts generated together (default: 8)")
    ev.add_argument("--resume", action="store_true", help="keep clips and scores already in OUT")
    ev.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    ev.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    return ev


COMMAND = Command("evaluate", "cadenza.plugins.workflows.evaluate.command:run", define)
