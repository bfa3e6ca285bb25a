"""The learning-rate schedule every Cadenza trainer uses: linear warm-up, then cosine decay."""

from __future__ import annotations

import math
from collections.abc import Callable


def lr_factor(warmup: int, total: int) -> Callable[[int], float]:
    """LR multiplier after ``step`` optimizer steps (for ``torch.optim.lr_scheduler.LambdaLR``):
    linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
