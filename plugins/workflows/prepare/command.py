"""``cadenza prepare``: tokenize a training set once into a token cache (see :mod:`cadenza.plugins.workflows.prepare.prepare`)."""

from __future__ import annotations

import sys
from typing import Any
from cadenza.plugins.workflows.prepare.prepare import prepare_cache
from cadenza.core.spec.validate import load_pipeline
from cadenza.registry import get_registry

SHOWN_SKIPS = 5  # the stderr line names this many skipped files; report.json lists them all


def run(args: Any) -> int:
    registry = get_registry()
    pipeline = load_pipeline(args.pipeline, registry)
    summary = prepare_cache(pipeline, registry, args.data, args.out, clip_seconds=args.clip_seconds,
                            valid_fraction=args.valid_fraction, shard_size=args.shard_size,
                            batch_size=args.batch_size, workers=args.workers, device=args.device,
                            progress=not getattr(args, "quiet", False))
    skipped = summary["skipped"]
    if skipped:
        shown = "; ".join(f"{s['source']} ({s['reason']})" for s in skipped[:SHOWN_SKIPS])
        more = f"; and {len(skipped) - SHOWN_SKIPS} more" if len(skipped) > SHOWN_SKIPS else ""
        print(f"prepare: skipped {len(skipped)} of {summary['files']} files: {shown}{more} "
              f"(all in {summary['out']}/report.json)", file=sys.stderr)
    resumed = f", {summary['shards_resumed']} kept from an earlier run" if summary["shards_resumed"] else ""
    print(f"prepare: {summary['clips']} clips (train {summary['train']}, valid {summary['valid']}), "
          f"{summary['seconds']:.1f} s of audio, in {summary['shards']} shards{resumed}; "
          f"{len(skipped)} files skipped; {summary['elapsed']:.1f} s -> {summary['out']}")
    return 0
