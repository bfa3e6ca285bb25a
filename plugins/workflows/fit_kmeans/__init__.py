"""``cadenza fit-kmeans``: its parser here (imported by ``cadenza --help``, argparse only); its
handler in :mod:`cadenza.plugins.workflows.fit_kmeans.command`, imported when the command runs."""

from __future__ import annotations

import argparse

from cadenza.core.cli.command import Command


def define(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    km = sub.add_parser("fit-kmeans", help="fit a semantic tokenizer's k-means codebook, or a codec's RVQ codebooks",
                        description="Extract the semantic tokenizer's features from audio and fit its k-means "
                        "codebook (mini-batch k-means in torch); writes a safetensors file of centroids. With "
                        "--component tokenizer, fit the acoustic codec's residual-VQ codebooks one after another "
                        "(e.g. spectral-codec) and write its weights file.")
    km.add_argument("--pipeline", "-p", required=True, help="spec file or preset whose component to fit")
    km.add_argument("--component", choices=("semantic_tokenizer", "tokenizer"), default="semantic_tokenizer",
                    help="which of the spec's components to fit (default: semantic_tokenizer)")
    km.add_argument("--data", required=True, help="folder of audio files (searched recursively) or a .jsonl/.csv "
                    "manifest of audio paths (e.g. a corpus's train.jsonl)")
    km.add_argument("--out", "-o", required=True, help="output .safetensors file (centroids, or the codec's weights)")
    km.add_argument("--clusters", type=int, default=None, help="number of centroids (default: the tokenizer's "
                    "vocab_size, or the codec's codebook_size)")
    km.add_argument("--codebooks", type=int, default=None,
                    help="tokenizer: residual codebooks to fit (default: the codec's num_codebooks)")
    km.add_argument("--batch-size", type=int, default=4096, help="feature frames per k-means update (default: 4096)")
    km.add_argument("--epochs", type=int, default=5, help="passes over the extracted features (default: 5)")
    km.add_argument("--max-frames", type=int, default=200_000, help="cap on feature frames kept in memory (default: 200000)")
    km.add_argument("--seed", type=int, default=0)
    km.add_argument("--device", default="cpu")
    km.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    return km


COMMAND = Command("fit-kmeans", "cadenza.plugins.workflows.fit_kmeans.command:run", define)
