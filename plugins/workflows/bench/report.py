"""Benchmark results as tables (Markdown, CSV) and plots (PNG).

Everything here is derived from the rows in ``results.jsonl``, so the report can be rebuilt at
any time (``cadenza bench MATRIX --out DIR --resume`` with nothing left to measure does just
that). matplotlib is imported only to draw, with the Agg backend (no display needed).
"""

from __future__ import annotations

import csv
import io
import math
import os
import platform
from pathlib import Path
from typing import Any

from cadenza.core.files.atomic import atomic_path, write_text

# Metric values shown in the Markdown table and plotted against speed, best known first.
# (name, higher is better)
QUALITY = (("adherence", True), ("text_similarity", True), ("fad", False), ("codec.si_sdr", True),
           ("codec.mel_distance", False), ("si_sdr", True), ("mel_distance", False))
_DETAIL_SUFFIXES = ("_match", "_checked", "_embeddings")


def noise_slots(row: dict[str, Any], metric: str) -> list[str]:
    """The random (untrained) slots that make ``row``'s value of ``metric`` a figure of noise; [] when it is real.

    A generated clip is made by every component, so any untrained slot makes its figures noise.
    A ``codec.*`` figure is the tokenizer's round trip of the reference recordings, so only an
    untrained tokenizer does: a trained codec, or one that needs no weights, is measured for
    real under random stage models. (A metric forced onto the codec that reads the
    ``conditioner`` input, text-similarity say, also depends on the conditioner: docs/bench.md
    says so.) Components that need no weights are never listed: ``random_weights`` is
    :meth:`cadenza.core.engine.cascade.Cascade.random_components`.
    """
    random = list(row.get("random_weights") or [])
    return [s for s in random if s == "tokenizer"] if metric.startswith("codec.") else random


def _random_note(row: dict[str, Any]) -> str:
    """What of a row with untrained slots is still real: speed and memory always, codec fidelity with a real codec."""
    slots = ", ".join(row["random_weights"])
    if noise_slots(row, "codec."):
        return (f"- `{row['id']}`: random (untrained) weights in {slots}: speed only (speed and memory are real, "
                "its quality figures are those of noise)")
    return (f"- `{row['id']}`: random (untrained) weights in {slots}: speed, memory and codec fidelity "
            "(`codec.*`, the tokenizer's own round trip) are real; its other quality figures are those of noise")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"
    return str(value)


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: nested dicts become ``outer.inner`` columns, lists become ``;``-joined text."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("overrides", "traceback"):
            continue
        if isinstance(value, dict):
            for inner, item in value.items():
                out[f"{key}.{inner}"] = item
        elif isinstance(value, list):
            out[key] = ";".join(map(str, value))
        else:
            out[key] = value
    out["overrides"] = "; ".join(f"{k}={_compact(v)}" for k, v in (row.get("overrides") or {}).items())
    return out


def _compact(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)


def metric_columns(rows: list[dict[str, Any]], headline: bool) -> list[str]:
    """Metric names found in the rows: the known quality ones first; details only when not ``headline``."""
    found: list[str] = []
    for row in rows:
        for key in row.get("metrics") or {}:
            if key not in found and not (headline and key.endswith(_DETAIL_SUFFIXES)):
                found.append(key)
    order = [name for name, _ in QUALITY]
    return sorted(found, key=lambda k: (order.index(k) if k in order else len(order), k))


def to_csv(rows: list[dict[str, Any]]) -> str:
    flat = [flatten(r) for r in rows]
    first = ["id", "label", "status", "overrides"]
    columns = first + sorted({k for r in flat for k in r} - set(first))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in flat:
        writer.writerow({k: (_fmt(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def stage_order(row: dict[str, Any]) -> list[str]:
    """Stage names in the order they ran, then ``decode`` (JSON rows keep keys sorted)."""
    rtf = row.get("stage_rtf") or {}
    order = [s for s in row.get("stages") or [] if s in rtf]
    return order + sorted(set(rtf) - set(order))


def _stage_split(row: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_fmt(row['stage_rtf'][k], 2)}" for k in stage_order(row))


def to_markdown(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    """The results page: what was run and where, one table row per combination, then the notes."""
    metrics = metric_columns(rows, headline=True)
    gpu = any("gpu_peak_mb" in r for r in rows)
    lines = [f"# Benchmark: {header['name']}", ""]
    if header.get("command"):
        lines += ["Reproduce with:", "", "```bash", header["command"], "```", ""]
    lines += [f"- machine: {header['machine']}", f"- settings: {header['settings']}",
              ("- RTF: generation wall time / seconds of audio generated (below 1: faster than real time); "
              "per-stage RTF in the CSV and the stage plot. Peak RSS: the combination's own worker process, "
              "torch and the plugins included."), ""]
    columns = ["combination", "status", "weights", "params (M)", "load s", "RTF", "stage RTF", "tokens/s",
               "peak RSS MB"] + (["GPU MB"] if gpu else []) + metrics + ["id"]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    notes = []
    for row in rows:
        random = row.get("random_weights") or []
        weights = "random" if random else ("trained" if row.get("status") == "ok" else "")
        params = row.get("parameters_total")
        cells = [row["label"], row["status"], weights, _fmt(params / 1e6 if _number(params) else None),
                 _fmt(row.get("load_s")), _fmt(row.get("rtf")), _stage_split(row),
                 _fmt(row.get("tokens_per_s_total"), 4), _fmt(row.get("peak_rss_mb"), 4)]
        cells += [_fmt(row.get("gpu_peak_mb"), 4)] if gpu else []
        cells += [_fmt((row.get("metrics") or {}).get(m)) for m in metrics] + [f"`{row['id']}`"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if row["status"] == "incompatible":
            notes.append(f"- `{row['id']}` skipped, incompatible: {row.get('reason')}")
        elif row["status"] == "failed":
            notes.append(f"- `{row['id']}` failed: {row.get('error')}")
        for metric, reason in (row.get("metric_notes") or {}).items():
            notes.append(f"- `{row['id']}`: {metric} n/a: {reason}")
        if random and row["status"] == "ok":
            notes.append(_random_note(row))
    if notes:
        lines += ["", "## Notes", ""] + notes
    # The plots inline (images, not links), so the page shows them where it is read.
    lines += ["", "![Quality against speed: each quality metric against the real-time factor, one point per combination]"
              "(quality_vs_speed.png)", "",
              "![Time per stage: seconds per second of audio for each stage, one bar per combination](stage_times.png)",
              "", "Every figure: `results.jsonl`; every column: `results.csv`.", ""]
    return "\n".join(lines)


def machine() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch = version("torch")
    except PackageNotFoundError:
        torch = "not installed"
    return (f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, torch {torch}, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _quality_axes(rows: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    have = {k for r in rows for k, v in (r.get("metrics") or {}).items() if _number(v)}
    axes = [(name, up) for name, up in QUALITY if name in have]
    return axes[:4] or [("peak_rss_mb", False)]


def plot_quality_vs_speed(rows: list[dict[str, Any]], path: Path) -> None:
    """One panel per quality metric: metric against RTF (log), one point per combination."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok" and _number(r.get("rtf"))]
    axes_for = _quality_axes(ok)
    fig, axes = plt.subplots(1, len(axes_for), figsize=(5.5 * len(axes_for), 4.5), squeeze=False)
    for ax, (name, higher) in zip(axes[0], axes_for):
        for row in ok:
            y = row.get(name) if name == "peak_rss_mb" else (row.get("metrics") or {}).get(name)
            if not _number(y):
                continue
            noise = name != "peak_rss_mb" and bool(noise_slots(row, name))
            ax.scatter(row["rtf"], y, s=40, marker="o", facecolors="none" if noise else "C0", edgecolors="C0")
            ax.annotate(row["label"][:28], (row["rtf"], y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("real-time factor (lower is faster)")
        ax.set_ylabel(f"{name} ({'higher' if higher else 'lower'} is better)")
        ax.grid(alpha=0.3)
    fig.suptitle("quality against speed (hollow: a figure of random weights, only its speed is real)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_stage_times(rows: list[dict[str, Any]], path: Path) -> None:
    """Stacked horizontal bars: seconds per second of audio, per stage and the codec decode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok" and r.get("stage_rtf")]
    stages: list[str] = []
    for row in ok:
        stages += [s for s in stage_order(row) if s not in stages]
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.35 * max(1, len(ok))))
    left = [0.0] * len(ok)
    for i, stage in enumerate(stages):
        widths = [r["stage_rtf"].get(stage, 0.0) for r in ok]
        ax.barh(range(len(ok)), widths, left=left, label=stage, color=f"C{i % 10}")
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(ok)), [r["label"][:40] for r in ok], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per second of audio (real-time factor)")
    if stages:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="stage", title_fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def write_report(rows: list[dict[str, Any]], out: Path, header: dict[str, Any], plots: bool = True) -> list[Path]:
    """``results.md``, ``results.csv`` and the two plots in ``out``; returns the paths written."""
    written = [out / "results.md", out / "results.csv"]
    write_text(written[0], to_markdown(rows, header))
    write_text(written[1], to_csv(rows))
    if plots:
        written += [out / "quality_vs_speed.png", out / "stage_times.png"]
        plot_quality_vs_speed(rows, written[2])
        plot_stage_times(rows, written[3])
    return written
