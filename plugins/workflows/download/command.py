"""``cadenza download``: fetch what a pipeline needs, or list it (``--list``)."""

from __future__ import annotations

import argparse

from cadenza.registry import get_registry
from cadenza.plugins.workflows.download.fetch import DownloadConfig, cached_folder, fetch, hub_checkpoints


def download(config: DownloadConfig, registry=None) -> int:
    """Print one line per checkpoint (cached, fetched, or missing with ``list_only``); 0 when all are here."""
    registry = registry or get_registry()
    checkpoints = hub_checkpoints(config.pipeline, registry)
    if not checkpoints:
        print(f"{config.pipeline}: names no Hugging Face checkpoint; nothing to download")
        return 0
    missing = 0
    for checkpoint in checkpoints:
        users = ", ".join(checkpoint.users)
        folder = cached_folder(checkpoint.repo_id, config.revision)
        if folder is not None:
            print(f"{checkpoint.repo_id}: cached in {folder} (for {users})")
        elif config.list_only:
            print(f"{checkpoint.repo_id}: not cached (for {users})")
            missing += 1
        else:
            folder = fetch(checkpoint.repo_id, config.revision, config.quiet)
            print(f"{checkpoint.repo_id}: downloaded to {folder} (for {users})")
    return 2 if missing else 0


def run(args: argparse.Namespace) -> int:
    return download(DownloadConfig(args.pipeline, args.revision, args.list, args.quiet))
