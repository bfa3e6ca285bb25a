"""Text conditioning: how much of each prompt attribute can a stage read from the MiniLM sentence embedding?

Why: the default's stages used to be trained on MuLan's view of each clip's *audio* and driven by
its view of the prompt's *text* (MusicLM's trick); for a MuLan this small, key and tempo barely
survive that trip (docs/benchmarks/mulan_conditioning.md: linear probes on its text view, fitted on
audio, reach 15-18% on key and 38-45% on tempo class). Stages trained directly on the captions'
``minilm`` embeddings see the same kind of input in training and at inference, so what matters is
whether the attribute is in the embedding at all: a linear probe per attribute, fitted on the
training captions and scored on test captions (held-out attribute combinations and wordings).

    python benchmarks/text_conditioning_probe.py --corpus CORPUS    # -> docs/benchmarks/text_conditioning_probe.*
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from mulan_conditioning import probe, read_split
from recording import command_line, load_average, machine_info, write_results

from cadenza.core.components import BuildContext
from cadenza.core.engine.weights import parse_weights
from cadenza.core.errors import CadenzaError
from cadenza.plugins.hf.text import MiniLMConfig, minilm_default_weights
from cadenza.plugins.hf.text_model import build_minilm
from cadenza.plugins.workflows.evaluate.runner import ATTRIBUTES, HELD_OUT_COMBINATION, HELD_OUT_WORDING


def embed(prompts: list, batch: int = 64) -> torch.Tensor:
    """Unit MiniLM sentence embeddings ``[N, 384]`` of the prompts' captions (the ``minilm`` conditioner, pooled)."""
    encoder = build_minilm(MiniLMConfig(), BuildContext(weights=parse_weights(minilm_default_weights())))
    with torch.no_grad():
        return torch.cat([encoder.embed_text([p.prompt for p in prompts[i:i + batch]]).values
                          for i in range(0, len(prompts), batch)])


def measure(train: list, test: list) -> dict:
    torch.manual_seed(0)
    train_x, test_x = embed(train), embed(test)
    groups = {name: [i for i, p in enumerate(test) if name in p.groups] for name in (HELD_OUT_COMBINATION, HELD_OUT_WORDING)}
    out = {}
    for attribute in ATTRIBUTES:
        labels = sorted({str(p.attributes.get(attribute)) for p in train + test})
        index = {label: i for i, label in enumerate(labels)}
        train_y = torch.tensor([index[str(p.attributes.get(attribute))] for p in train])
        test_y = torch.tensor([index[str(p.attributes.get(attribute))] for p in test])
        right = probe(train_x, train_y, len(labels))(test_x) == test_y
        out[attribute] = {"majority": round(float(torch.bincount(test_y).max()) / len(test_y), 3),
                          "text": round(float(right.float().mean()), 3),
                          **{name: round(float(right[rows].float().mean()), 3) if rows else None
                             for name, rows in groups.items()}}
    return {"probes": out, "group_sizes": {name: len(rows) for name, rows in groups.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a `cadenza corpus` folder (train/test splits)")
    parser.add_argument("--train", type=int, default=2000, help="training captions for the probes")
    parser.add_argument("--test", type=int, default=400, help="test captions scored")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    load, started = load_average(), time.perf_counter()
    try:
        train, test = read_split(args.corpus, "train", args.train), read_split(args.corpus, "test", args.test)
        measured = measure(train, test)
    except CadenzaError as exc:
        parser.exit(2, f"text_conditioning_probe: {exc}\n")
    result = {"command": command_line(argv), "train_captions": len(train), "test_captions": len(test),
              **measured, "seconds": round(time.perf_counter() - started, 1), "machine": machine_info(load)}
    def cell(x: float | None) -> str:
        return "-" if x is None else f"{x:.0%}"

    sizes = measured["group_sizes"]
    rows = [f"| {a} | {cell(p['majority'])} | {cell(p['text'])} | {cell(p[HELD_OUT_COMBINATION])} | "
            f"{cell(p[HELD_OUT_WORDING])} |" for a, p in measured["probes"].items()]
    markdown = "\n".join([
        "# Text conditioning: what a linear probe reads from the MiniLM caption embedding", "",
        f"Command: `{result['command']}` ({len(train)} training captions; {len(test)} test captions, "
        f"{sizes[HELD_OUT_COMBINATION]} of held-out attribute combinations and {sizes[HELD_OUT_WORDING]} of held-out "
        f"wordings; {result['seconds']:.0f} s on {result['machine']['cpu_count']} CPUs).", "",
        "A logistic-regression probe per attribute on the `minilm` conditioner's pooled embedding, fitted on training "
        "captions and scored on test captions (whose wordings and, for *held-out*, attribute combinations the "
        "training captions do not have). *majority*: always answering the test set's most common value.", "",
        "| attribute | majority | all test captions | held-out combinations | held-out wordings |",
        "|---|---:|---:|---:|---:|", *rows, ""])
    write_results(args.out_dir, "text_conditioning_probe", result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
