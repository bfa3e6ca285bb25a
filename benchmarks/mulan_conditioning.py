"""MuLan conditioning: what survives the trip from a clip's audio to its caption's text?

Why: the stages train on the conditioner's view of each clip's *audio* and generate from its
view of a *text* (MusicLM's trick). That only works for the information both views share.
This measures it on corpus clips with a pipeline's MuLan, for each way a stage can read it
(the conditioner's ``output``):

- ``tokens``: how often caption and clip get the same residual-VQ id, per level;
- for every form (``tokens`` as one-hot ids, ``quantized`` ids summed back to a vector,
  ``pooled`` raw embedding): a linear probe per corpus attribute, fitted on training clips'
  audio and scored on test clips' audio and on their captions. "text" close to "audio" means
  a stage that learned the attribute from audio gets it from a prompt too; "audio" near
  chance means MuLan does not hear the attribute at all.

    python benchmarks/mulan_conditioning.py --corpus CORPUS      # the default's MuLan -> docs/benchmarks/
    python benchmarks/mulan_conditioning.py --corpus CORPUS --pipeline default --pipeline old.yaml   # compare
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

FORMS = ("tokens", "quantized", "pooled")


def read_split(corpus: Path, split: str, limit: int) -> list:
    """The split's labelled lines, read as `cadenza evaluate` reads them (caption, attributes, audio)."""
    from cadenza.plugins.workflows.evaluate.runner import read_prompts

    return read_prompts(corpus / f"{split}.jsonl", limit=limit)[0]


def embed(mulan, prompts: list, batch: int = 32):
    """Unit audio and caption embeddings ``[N, dim]`` of labelled corpus lines."""
    import torch

    from cadenza.core.audio.io import load_audio

    audio, text = [], []
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            chunk = prompts[i:i + batch]
            clips = [load_audio(p.reference) for p in chunk]
            length = min(c.shape[-1] for c, _ in clips)
            audio.append(mulan.audio_embedding(torch.stack([c[:, :length] for c, _ in clips]), clips[0][1]))
            text.append(mulan.text_embedding([p.prompt for p in chunk]))
    return torch.cat(audio), torch.cat(text)


def features(mulan, emb, form: str):
    """What a stage reading ``form`` sees: one-hot ids, the summed codebook vector, or the embedding."""
    import torch
    from torch.nn import functional as F

    if form == "pooled":
        return emb
    ids = mulan.quantizer.quantize(emb)
    if form == "quantized":
        return F.normalize(mulan.quantizer.dequantize(ids), dim=-1)
    return F.one_hot(ids, mulan.quantizer.codebook_size).flatten(1).to(torch.float32)


def probe(train_x, train_y, classes: int, steps: int = 300):
    """A seeded multinomial logistic regression (weights from zeros, so deterministic)."""
    import torch
    from torch.nn import functional as F

    weight = torch.zeros(train_x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    scale = 10.0 if train_x.shape[1] < 1024 else 1.0  # unit vectors need a temperature; one-hot ids do not
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(train_x @ weight * scale + bias, train_y) + 1e-3 * weight.pow(2).sum()
        loss.backward()
        optimizer.step()
    return lambda x: (x @ weight * scale + bias).argmax(-1).detach()


def measure(pipeline: str, train: list, test: list) -> dict:
    """Token agreement, cosine and probe accuracies of one pipeline's MuLan."""
    import torch

    from cadenza.core.engine.cascade import Cascade
    from cadenza.core.errors import InputError
    from cadenza.plugins.workflows.evaluate.runner import ATTRIBUTES
    from cadenza.registry import get_registry

    torch.manual_seed(0)
    mulan = Cascade.from_spec(pipeline, get_registry()).conditioner
    if not hasattr(mulan, "quantizer") or not hasattr(mulan, "audio_embedding"):
        raise InputError(f"pipeline {pipeline!r}: its conditioner is not MuLan-style (audio and text towers + quantiser)")
    train_audio, _ = embed(mulan, train)
    test_audio, test_text = embed(mulan, test)
    same = (mulan.quantizer.quantize(test_audio) == mulan.quantizer.quantize(test_text)).float().mean(0)
    probes: dict[str, dict] = {}
    for attribute in ATTRIBUTES:
        labels = sorted({str(p.attributes.get(attribute)) for p in train + test})
        index = {label: i for i, label in enumerate(labels)}
        train_y = torch.tensor([index[str(p.attributes.get(attribute))] for p in train])
        test_y = torch.tensor([index[str(p.attributes.get(attribute))] for p in test])
        row = {"chance": round(float(torch.bincount(test_y).max()) / len(test_y), 3)}  # the majority class
        for form in FORMS:
            predict = probe(features(mulan, train_audio, form), train_y, len(labels))
            for view, emb in (("audio", test_audio), ("text", test_text)):
                row[f"{form}_{view}"] = round(float((predict(features(mulan, emb, form)) == test_y).float().mean()), 3)
        probes[attribute] = row
    return {"pipeline": pipeline, "token_agreement": [round(float(x), 3) for x in same],
            "cosine_text_audio": round(float((test_audio * test_text).sum(-1).mean()), 3), "probes": probes}


def section(m: dict) -> list[str]:
    header = "| attribute | majority | " + " | ".join(f"{f} audio | {f} text" for f in FORMS) + " |"
    rows = [f"| {a} | {p['chance']:.0%} | " + " | ".join(f"{p[f + '_audio']:.0%} | {p[f + '_text']:.0%}" for f in FORMS)
            + " |" for a, p in m["probes"].items()]
    return [f"## `{m['pipeline']}`", "",
            "Caption and clip quantise to the same residual-VQ id on "
            + ", ".join(f"level {q}: {x:.0%}" for q, x in enumerate(m["token_agreement"]))
            + f"; mean cosine of caption and clip embeddings {m['cosine_text_audio']:.2f}.", "",
            header, "|---|---:|" + "---:|" * (2 * len(FORMS)), *rows, ""]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", action="append", help="a pipeline whose conditioner is `mulan` "
                        "(repeat to compare; default: the bundled `default`)")
    parser.add_argument("--corpus", type=Path, required=True, help="a `cadenza corpus` folder (train/test splits)")
    parser.add_argument("--train", type=int, default=600, help="training clips for the probes")
    parser.add_argument("--test", type=int, default=200, help="test clips and captions scored")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks")
    args = parser.parse_args(argv)

    from recording import command_line, load_average, machine_info, write_results

    from cadenza.core.errors import CadenzaError

    load = load_average()
    started = time.perf_counter()
    try:
        train, test = read_split(args.corpus, "train", args.train), read_split(args.corpus, "test", args.test)
        measured = [measure(p, train, test) for p in args.pipeline or ["default"]]
    except CadenzaError as exc:
        parser.exit(2, f"mulan_conditioning: {exc}\n")
    result = {"command": command_line(argv), "train_clips": len(train), "test_clips": len(test),
              "pipelines": measured, "seconds": round(time.perf_counter() - started, 1), "machine": machine_info(load)}
    markdown = "\n".join([
        "# MuLan conditioning: audio view vs text view", "",
        f"Command: `{result['command']}` ({len(train)} training clips for the probes, {len(test)} test clips and their "
        f"captions; {result['seconds']:.0f} s on {result['machine']['cpu_count']} CPUs).", "",
        "Linear probes are fitted on training clips' **audio** in each form a stage can read (`tokens` as one-hot ids, "
        "`quantized`, `pooled`) and scored on test clips' audio and on their captions' **text**: what a stage "
        "trained on audio can get from a prompt. *majority*: always answering the test set's most common value.", "",
        *[line for m in measured for line in section(m)]])
    write_results(args.out_dir, "mulan_conditioning", result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
