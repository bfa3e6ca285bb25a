"""cadenza.core.quantize.kmeans: recovers clusters, is deterministic, and survives degenerate data."""

import pytest
import torch

from cadenza.core.quantize.kmeans import assign, fit_kmeans


def blobs(k: int = 6, per: int = 300, dim: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, dim, generator=gen) * 10
    labels = torch.arange(k).repeat_interleave(per)
    points = centers[labels] + 0.5 * torch.randn(k * per, dim, generator=gen)
    perm = torch.randperm(len(points), generator=gen)
    return points[perm], labels[perm]


def purity(ids: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of points whose cluster's majority label is their own label."""
    total = sum(int(torch.bincount(labels[ids == c]).max()) for c in ids.unique())
    return total / len(labels)


def test_recovers_well_separated_blobs():
    points, labels = blobs()
    centroids = fit_kmeans(points, 6, batch_size=256, epochs=5, seed=0)
    ids = assign(points, centroids)
    assert centroids.shape == (6, 8) and centroids.dtype == torch.float32
    assert purity(ids, labels) == 1.0 and len(ids.unique()) == 6  # one cluster per blob


def test_deterministic_given_a_seed():
    points, _ = blobs(k=10, per=50)
    a = fit_kmeans(points, 10, batch_size=64, epochs=3, seed=7)
    b = fit_kmeans(points, 10, batch_size=64, epochs=3, seed=7)
    c = fit_kmeans(points, 10, batch_size=64, epochs=3, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_more_clusters_than_distinct_points():
    points = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [5.0, 5.0]]).repeat(3, 1)
    centroids = fit_kmeans(points, 10, batch_size=4, epochs=3, seed=0)
    assert centroids.shape == (10, 2) and torch.isfinite(centroids).all()
    ids = assign(points, centroids)
    assert torch.equal(centroids[ids], points)  # every point sits exactly on its centroid
    assert fit_kmeans(points[:2], 5, epochs=2).shape == (5, 2)  # fewer points than clusters


def test_dead_centroids_are_reseeded():
    points, _ = blobs(k=4, per=200)
    init = fit_kmeans(points, 4, epochs=2, seed=0)
    far = torch.cat([init, torch.full((2, 8), 1e4)])  # two centroids no point will ever pick
    stuck = fit_kmeans(points, 6, batch_size=200, epochs=1, init=far)
    assert len(assign(points, stuck).unique()) == 4  # one epoch: no chance to re-seed yet
    fixed = fit_kmeans(points, 6, batch_size=200, epochs=3, init=far)
    assert len(assign(points, fixed).unique()) == 6 and fixed.abs().max() < 1e3
    with pytest.raises(ValueError, match="init centroids"):
        fit_kmeans(points, 5, init=far)


def test_assign_keeps_leading_shape():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    x = torch.tensor([[[1.0, 1.0], [9.0, 9.0], [-3.0, 0.0]]])
    assert torch.equal(assign(x, centroids), torch.tensor([[0, 1, 0]]))
    assert assign(torch.zeros(2, 0, 2), centroids).shape == (2, 0)


@pytest.mark.parametrize(("shape", "k"), [((0, 3), 2), ((5,), 2), ((5, 3), 0)])
def test_bad_input_is_a_value_error(shape, k):
    with pytest.raises(ValueError):
        fit_kmeans(torch.zeros(shape), k)
