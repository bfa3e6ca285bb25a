"""The bundled default's ablation table: one row per variant, read from its ``cadenza evaluate`` output.

Why: the default is chosen by measurement (issue: "each lever a row in a recorded ablation
table; keep what wins"). Each variant is trained by the recipe's commands with one thing
changed, then scored by ``cadenza evaluate`` on the recipe's held-out prompts; this script
collects those summaries into one table so rows measured in different sessions sit side by
side, each with the command that produced it. A row is added or replaced by its label; the
others are kept.

    python benchmarks/default_ablation.py --row "shipped=runs/eval-shipped" \\
        --row "semantic cross-attention=runs/eval-semantic-cross" --note "semantic cross-attention=..."

Writes docs/benchmarks/default_ablation.{json,md} (or ``--out-dir``) atomically.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recording import command_line, write_results

ROOT = Path(__file__).resolve().parents[1]
ATTRIBUTES = ("tempo_class", "key", "mode", "register", "dynamics", "drums", "instrument")
GROUPS = ("all", "held-out combination")


def read_summary(folder: Path) -> dict:
    """The figures of one ``cadenza evaluate --out FOLDER`` run that the table shows."""
    path = folder / "summary.json"
    if not path.exists():
        raise SystemExit(f"default_ablation: {path} is missing (run `cadenza evaluate --out {folder}` first)")
    summary = json.loads(path.read_text())
    command = next((line.split("`")[1] for line in (folder / "summary.md").read_text().splitlines()
                    if line.startswith("Command: `")), None)
    groups = {}
    for group in GROUPS:
        figures = summary["adherence"].get(group)
        if figures is None:
            continue
        groups[group] = {"prompts": figures["prompts"], "clips": figures["clips"],
                         "overall": figures["overall"]["generated"],
                         "share_of_ceiling": figures["overall"]["share_of_ceiling"],
                         "attributes": {name: figures["attributes"][name]["generated"]
                                        for name in ATTRIBUTES if name in figures["attributes"]},
                         "chance": {name: figures["attributes"][name]["chance"]
                                    for name in ATTRIBUTES if name in figures["attributes"]}}
    return {"pipeline": summary["pipeline"], "seeds": summary["seeds"], "evaluate_command": command,
            "fad": (summary.get("fad") or {}).get("value"), "groups": groups}


def markdown(result: dict) -> str:
    lines = ["# The bundled default: ablation", "",
             ("Each row is the default with one lever changed, trained by `recipes/default_model.py`'s commands on "
              "the same corpus and cache, scored by `cadenza evaluate` on the recipe's held-out prompts "
              "(`corpus/test.jsonl`, first 60). Figures are the share of clips whose measured attribute matches "
              "the prompt; *of ceiling* divides the overall figure by the estimators' own accuracy on the "
              "reference clips. With 60 prompts one clip is 1.7 points, so differences under about 6 points in "
              "one attribute are within noise."), ""]
    for group in GROUPS:
        rows = [r for r in result["rows"] if group in r["groups"]]
        if not rows:
            continue
        chance = rows[0]["groups"][group]["chance"]
        lines += [f"## {group}", "",
                  "| variant | clips | " + " | ".join(ATTRIBUTES) + " | overall | of ceiling | FAD |",
                  "|---|---:|" + "---:|" * len(ATTRIBUTES) + "---:|---:|---:|",
                  "| *chance* | | " + " | ".join(f"*{100 * chance[n]:.0f}%*" for n in ATTRIBUTES) + " | | | |"]
        for row in rows:
            g = row["groups"][group]
            cells = " | ".join(f"{100 * g['attributes'][n]:.1f}%" for n in ATTRIBUTES)
            fad = f"{row['fad']:.2f}" if row.get("fad") is not None and group == "all" else ""
            lines.append(f"| {row['label']} | {g['clips']} | {cells} | {100 * g['overall']:.1f}% | "
                         f"{100 * g['share_of_ceiling']:.1f}% | {fad} |")
        lines.append("")
    lines += ["## Rows", ""]
    for row in result["rows"]:
        lines.append(f"- **{row['label']}**: {row.get('note') or ''} Scored by `{row['evaluate_command']}`.")
    lines += ["", "Table written by `python benchmarks/default_ablation.py` (the last call's command is in the JSON "
              "beside this page).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", action="append", default=[], metavar="LABEL=EVAL_DIR",
                        help="add or replace the row LABEL with the `cadenza evaluate` output in EVAL_DIR")
    parser.add_argument("--note", action="append", default=[], metavar="LABEL=TEXT",
                        help="what the row LABEL changed and how it was trained")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    earlier = args.out_dir / "default_ablation.json"
    rows = json.loads(earlier.read_text())["rows"] if earlier.exists() else []
    notes = dict(item.split("=", 1) for item in args.note)
    for item in args.row:
        label, _, folder = item.partition("=")
        if not folder:
            parser.error(f"--row {item!r}: expected LABEL=EVAL_DIR")
        row = {"label": label, **read_summary(Path(folder)), "note": notes.pop(label, None)}
        rows = [r for r in rows if r["label"] != label] + [row]
    for label, note in notes.items():  # a note for a row recorded earlier
        for row in rows:
            if row["label"] == label:
                row["note"] = note
    result = {"command": command_line(argv), "rows": rows}
    write_results(args.out_dir, "default_ablation", result, markdown(result))
    print(f"wrote {args.out_dir / 'default_ablation.md'} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
