"""Mini-batch k-means in torch: the codebook of every k-means semantic tokenizer.

MusicLM/AudioLM semantic tokens are nearest-centroid ids of self-supervised speech features.
Fitting those centroids needs no library beyond torch: k-means++ seeding on a sample, then
mini-batch updates (Sculley, 2010) where each centroid moves to the running mean of every
point ever assigned to it (learning rate ``1 / count``). That is cheap per step, converges in
a few epochs over hundreds of thousands of frames, and runs on whatever device holds them.
When one batch holds all the points, each epoch is exactly a Lloyd iteration.

Determinism: all randomness comes from one CPU ``torch.Generator`` seeded with ``seed``, so
the same features and seed give the same centroids. Centroids that win no point during an
epoch are re-seeded from points far from their nearest centroid (k-means++ style), so the
codebook ends with as few dead entries as the data allows. With fewer distinct points than
``k`` some centroids necessarily coincide; that is allowed (``assign`` picks the first).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def assign(features: torch.Tensor, centroids: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Nearest centroid (squared Euclidean) of each ``[..., D]`` feature -> ids ``[...]`` int64.

    Computed in chunks of rows so a large feature matrix never needs an ``[N, K]`` matrix at once.
    """
    flat = features.reshape(-1, features.shape[-1]).to(centroids.dtype)
    c_sq = centroids.pow(2).sum(-1)
    out = [(c_sq - 2 * part @ centroids.T).argmin(-1) for part in flat.split(chunk)] if len(flat) else []
    ids = torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=features.device)
    return ids.reshape(features.shape[:-1])


def _nearest_sq_dist(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    d = points.pow(2).sum(-1, keepdim=True) - 2 * points @ centroids.T + centroids.pow(2).sum(-1)
    return d.min(-1).values.clamp(min=0)


def _weighted_pick(weights: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` indices drawn in proportion to ``weights`` (uniformly when all are zero)."""
    weights = weights.double().cpu()
    if not bool(weights.sum() > 0):
        weights = torch.ones_like(weights)
    return torch.multinomial(weights, count, replacement=True, generator=generator)


def kmeans_plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): each new centroid is a point drawn with
    probability proportional to its squared distance to the nearest centroid chosen so far."""
    first = torch.randint(len(points), (1,), generator=generator)
    centroids = [points[first.to(points.device)]]
    nearest = _nearest_sq_dist(points, centroids[0])
    for _ in range(1, k):
        pick = _weighted_pick(nearest, 1, generator).to(points.device)
        centroids.append(points[pick])
        nearest = torch.minimum(nearest, _nearest_sq_dist(points, centroids[-1]))
    return torch.cat(centroids)


@torch.no_grad()
def fit_kmeans(
    features: torch.Tensor,
    k: int,
    *,
    batch_size: int = 4096,
    epochs: int = 5,
    seed: int = 0,
    init_sample: int | None = None,
    init: torch.Tensor | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Fit ``k`` centroids to ``features`` ``[N, D]``; returns ``[k, D]`` float32 on their device.

    ``init_sample`` points (default ``max(4096, 4 k)``, at most N) seed k-means++, whose cost
    grows with sample size times k; ``init`` ``[k, D]`` replaces that seeding (warm start from an
    earlier codebook). ``progress(n)`` is called after each mini-batch of n points.
    """
    if features.dim() != 2 or len(features) == 0:
        raise ValueError(f"k-means needs a non-empty [N, D] feature matrix, got shape {tuple(features.shape)}")
    if k < 1 or batch_size < 1 or epochs < 0:
        raise ValueError(f"k-means needs k >= 1, batch_size >= 1 and epochs >= 0 (got {k}, {batch_size}, {epochs})")
    x = features.float()
    n, device = len(x), x.device
    gen = torch.Generator().manual_seed(seed)
    if init is not None:
        if tuple(init.shape) != (k, x.shape[1]):
            raise ValueError(f"init centroids must be [{k}, {x.shape[1]}], got {tuple(init.shape)}")
        centroids = init.to(x).clone()
    else:
        sample = min(n, init_sample or max(4096, 4 * k))
        sample_idx = torch.randperm(n, generator=gen)[:sample].to(device)
        centroids = kmeans_plus_plus(x[sample_idx], k, gen)
    counts = torch.zeros(k, device=device)
    for epoch in range(epochs):
        won = torch.zeros(k, dtype=torch.bool, device=device)
        if batch_size >= n:  # one batch is all the data: a plain Lloyd step (c = mean of its points),
            counts.zero_()   # which a running mean over repeated passes of the same points would only damp
        for batch_idx in torch.randperm(n, generator=gen).split(batch_size):
            batch = x[batch_idx.to(device)]
            ids = assign(batch, centroids)
            sums = torch.zeros_like(centroids).index_add_(0, ids, batch)
            hits = torch.bincount(ids, minlength=k).to(counts.dtype)
            counts += hits
            # Running mean: c <- c + (sum - hits * c) / count, i.e. eta = 1/count per point.
            moved = hits > 0
            centroids[moved] += (sums[moved] - hits[moved, None] * centroids[moved]) / counts[moved, None]
            won |= moved
            if progress is not None:
                progress(len(batch))
        dead = (~won).nonzero().flatten()
        if len(dead) and epoch < epochs - 1:
            # Re-seed dead centroids on a fresh batch, far from the live ones (k-means++ style).
            batch = x[torch.randperm(n, generator=gen)[:batch_size].to(device)]
            live = centroids[won] if bool(won.any()) else centroids
            picks = _weighted_pick(_nearest_sq_dist(batch, live), len(dead), gen).to(device)
            centroids[dead] = batch[picks]
            counts[dead] = 0
    return centroids
