"""Deterministic k-means (k-means++ initialisation, Lloyd iterations) on a small point set.

Used by ANPrompt to cluster weak-noise text features into noise prompts, but generic: points are
rows of an (N, D) tensor, distances are Euclidean. The result depends only on the points, `k` and
`seed` (an explicit `torch.Generator`; the global RNG is never touched), and is the same on every
call: ties in the nearest-centroid assignment go to the lowest centroid index, and an empty
cluster is re-seeded with the point farthest from its centroid (lowest index on ties).
Computation runs in float64 on the points' device; centroids come back in the points' dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class KMeansResult:
    centroids: Tensor  # (k, D)
    labels: Tensor  # (N,) index of each point's centroid
    inertia: float  # sum of squared distances of the points to their centroids
    n_iter: int  # Lloyd iterations run
    converged: bool  # assignments stopped changing (or centroids moved less than tol) before max_iter


def _sq_dist(x: Tensor, c: Tensor) -> Tensor:
    """(N, k) squared Euclidean distances, exact enough in float64 and never negative."""
    d = (x * x).sum(1, keepdim=True) - 2.0 * x @ c.t() + (c * c).sum(1)[None]
    return d.clamp_min_(0.0)


def kmeans_plusplus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): indices (k,) of the initial centroids."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator).item())
    chosen = [first]
    d2 = _sq_dist(x, x[first : first + 1]).squeeze(1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0.0:  # every remaining point coincides with a chosen centroid: take the next unused index
            unused = [i for i in range(n) if i not in set(chosen)]
            nxt = unused[0]
        else:
            nxt = int(torch.multinomial((d2 / total).cpu(), 1, generator=generator).item())
        chosen.append(nxt)
        d2 = torch.minimum(d2, _sq_dist(x, x[nxt : nxt + 1]).squeeze(1))
    return torch.tensor(chosen, dtype=torch.long)


def kmeans(points: Tensor, k: int, *, seed: int = 0, max_iter: int = 100, tol: float = 1e-7) -> KMeansResult:
    """Cluster the rows of `points` (N, D) into k clusters; deterministic for a given seed.

    Example:
        >>> res = kmeans(torch.randn(100, 8), 4, seed=0)
        >>> res.centroids.shape
        torch.Size([4, 8])
    """
    if points.dim() != 2:
        raise ValueError(f"kmeans expects (N, D) points, got shape {tuple(points.shape)}")
    n = points.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"kmeans needs 1 <= k <= number of points; got k={k} for {n} points")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if not torch.isfinite(points).all():
        raise ValueError("kmeans points contain NaN or inf")
    x = points.detach().to(torch.float64)
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    centroids = x[kmeans_plusplus(x.cpu(), k, g).to(x.device)].clone()
    labels = torch.full((n,), -1, dtype=torch.long, device=x.device)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        d = _sq_dist(x, centroids)
        new_labels = d.argmin(dim=1)  # ties: lowest index (argmin returns the first minimum)
        new_centroids = torch.zeros_like(centroids).index_add_(0, new_labels, x)
        counts = torch.bincount(new_labels, minlength=k).to(x.dtype)
        empty = (counts == 0).nonzero().flatten().tolist()
        new_centroids = new_centroids / counts.clamp_min(1.0)[:, None]
        if empty:  # re-seed each empty cluster with the point farthest from its current centroid
            far = d.gather(1, new_labels[:, None]).squeeze(1).clone()
            for j in empty:
                i = int(far.argmax())
                new_centroids[j] = x[i]
                far[i] = -1.0
        shift = float((new_centroids - centroids).pow(2).sum(1).max())
        same = bool((new_labels == labels).all()) and not empty
        centroids, labels = new_centroids, new_labels
        if same or shift <= tol:
            converged = True
            break
    d = _sq_dist(x, centroids)
    labels = d.argmin(dim=1)
    inertia = float(d.gather(1, labels[:, None]).sum())
    return KMeansResult(centroids.to(points.dtype), labels, inertia, it, converged)
