"""Intervals and paired comparisons from per-image correctness.

Every evaluation record holds `correct` (one "1"/"0" per test image, in a fixed order) and
`items_sha256` (which images). From these:

- **One accuracy** (one run, one evaluation): the Wilson score interval of a binomial proportion
  (`scipy.stats.binomtest(...).proportion_ci`): the test images are the sample, the model is fixed.
  Wilson's interval stays honest at 0% and 100%, where a resampling interval collapses to a point;
  so it is also used, on the pooled counts, for a cell whose every seed and image agree.
- **A table cell** (a method's accuracy averaged over seeds, or over datasets too) and **a paired
  difference** between two methods: two things vary from one replication of an experiment to the
  next, the few-shot training set (the seed) and the test images, and the interval adds both.
  Images: a bootstrap over the test images of each split (one resampling shared by every seed and
  both methods: they saw the same images) gives the spread of the statistic (mean accuracy, or the
  per-seed harmonic mean of base and novel accuracy, averaged over seeds, then over datasets).
  Seeds: the sample variance of the per-seed values over the number of seeds. The interval is
  Student's t on the summed variance with Welch-Satterthwaite degrees of freedom (scipy.stats.t):
  with 3 seeds a seed-dominated spread gets the width of t with 2 degrees of freedom, where a
  bootstrap over 3 seeds would be far too narrow; an image-dominated spread gets the normal width.
  For A - B every quantity is the paired per-seed, per-replicate difference.
  tests/test_stats.py measures the coverage on simulated worlds with a known answer.
- **Verdict** on "A > B": `established` when the 95% interval of A - B lies above 0, `refuted`
  when it lies below 0, `not established` otherwise.
- McNemar's exact test (a binomial test on the discordant images, `scipy.stats.binomtest`) is
  given beside a pooled accuracy difference as a second, assumption-light check.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

LEVEL = 0.95
N_BOOT = 2000


def flags(record: dict) -> np.ndarray | None:
    """A record's per-image correctness as a bool array (None for records measured before it was kept)."""
    s = record.get("correct")
    if not isinstance(s, str) or len(s) != record.get("n"):
        return None
    return np.frombuffer(s.encode(), dtype=np.uint8) == ord("1")


def stacked_flags(records: list) -> np.ndarray | None:
    """(seeds, images) correctness of one evaluation over several runs; None unless every run kept its
    per-image results on as many images (seeds may hold different `--n-max` subsets of one size)."""
    arrays = [flags(r) if r is not None else None for r in records]
    if not arrays or any(a is None for a in arrays) or len({a.shape for a in arrays}) != 1:
        return None
    return np.stack(arrays)


def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    from scipy.stats import binomtest

    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided McNemar p-value of paired correctness (discordant pairs ~ Binomial(n, 1/2))."""
    from scipy.stats import binomtest

    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    if a_only + b_only == 0:
        return 1.0
    return float(binomtest(a_only, a_only + b_only, 0.5).pvalue)


@dataclass
class Cell:
    """One method on one dataset: per split, a (seeds x images) correctness matrix, seeds in one order."""

    splits: dict[str, np.ndarray] = field(default_factory=dict)


def _hm(b, n):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b + n > 0, 2 * b * n / (b + n), 0.0)


def _per_seed(cell_accs: dict[str, np.ndarray], kind: str) -> np.ndarray:
    """(R, S) statistic per replicate and seed from split -> (R, S) accuracies.

    kind "hm": the HM of splits base and novel; "hm_change": that HM minus the HM of the reference
    splits base@clean and novel@clean (the same images under another condition); "acc": the mean."""
    if kind == "hm":
        return _hm(cell_accs["base"], cell_accs["novel"])
    if kind == "hm_change":
        return _hm(cell_accs["base"], cell_accs["novel"]) - _hm(cell_accs["base@clean"], cell_accs["novel@clean"])
    return np.mean(list(cell_accs.values()), axis=0)


@functools.lru_cache(maxsize=64)
def _resample_counts(seed: int, n_boot: int, sizes: tuple[int, ...]) -> tuple[dict, np.ndarray | None]:
    """The generator's state after, and the counts of, the last of the multinomial image resamplings
    of `sizes` (test-set sizes, in the order drawn) from `default_rng(seed)`.

    A report compares many method pairs over the same datasets, so the same sequence of draws recurs;
    memoising it by its prefix gives every comparison the numbers a fresh generator would (the draws
    were nearly all of a report's time)."""
    if not sizes:
        return np.random.default_rng(seed).bit_generator.state, None
    state, _ = _resample_counts(seed, n_boot, sizes[:-1])
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = state
    N = sizes[-1]
    counts = rng.multinomial(N, np.full(N, 1.0 / N), size=n_boot)
    counts = counts.astype(np.uint16 if N <= np.iinfo(np.uint16).max else np.int64)
    counts.setflags(write=False)
    return rng.bit_generator.state, counts


def _image_replicates(datasets: list[tuple[Cell, ...]], kind: str, n_boot: int, seed: int) -> list[list[np.ndarray]]:
    """Per method (position in the tuples), per dataset: the (R, S) per-seed statistic under `n_boot`
    resamplings of the test images, one resampling shared by every seed and method; replicate 0 is the
    data as measured. The resamplings are those of one `default_rng(seed)` drawing a multinomial per
    dataset and image set in order (memoised: `_resample_counts`)."""
    sizes: tuple[int, ...] = ()
    out: list[list[np.ndarray]] = [[] for _ in range(len(datasets[0]))]
    for cells in datasets:
        weights = {}
        for split, m in cells[0].splits.items():
            images = split.split("@")[0]  # "base@clean" holds the same images as "base": one resampling
            if images not in weights:
                N = m.shape[1]
                sizes += (N,)
                w = _resample_counts(seed, n_boot, sizes)[1].astype(np.float64)
                w[0] = 1.0
                weights[images] = w / N
            weights[split] = weights[images]
        for j, cell in enumerate(cells):
            accs = {split: weights[split] @ m.T.astype(np.float64) for split, m in cell.splits.items()}
            out[j].append(_per_seed(accs, kind))
    return out


@dataclass
class Estimate:
    value: float
    low: float
    high: float
    se_seeds: float = 0.0  # the two parts of the standard error
    se_images: float = 0.0
    df: float = float("inf")


def _combine(per_dataset: list[np.ndarray], level: float, lowest: float) -> Estimate:
    """Estimate and interval of mean_d mean_s T[d, s] from per-dataset (R, S) replicates (row 0 = data).

    Seeds: the spread of the per-seed values (sample variance / S, per dataset). Images: the spread of
    the seed-mean over the image resamplings. Their sum is the variance; the interval uses Student's
    t with Welch-Satterthwaite degrees of freedom, so that with 3 seeds a seed-dominated spread gets
    t(2)'s width and an image-dominated one the normal width."""
    from scipy.stats import t as student_t

    D = len(per_dataset)
    value = float(np.mean([r[0].mean() for r in per_dataset]))
    seed_parts = [(r[0].var(ddof=1) / r.shape[1] / D**2, r.shape[1] - 1) for r in per_dataset if r.shape[1] > 1]
    var_seeds = sum(v for v, _ in seed_parts)
    var_images = float(np.var(np.mean([r.mean(axis=1) for r in per_dataset], axis=0)[1:], ddof=1))
    total = var_seeds + var_images
    denom = sum(v**2 / df for v, df in seed_parts)
    df = total**2 / denom if denom > 0 else float("inf")
    half = float(student_t.ppf((1 + level) / 2, df)) * np.sqrt(total) if total > 0 else 0.0
    # an accuracy lies in [0, 1] and a difference of two in [-1, 1]: clipping loses no coverage
    low, high = max(value - half, lowest), min(value + half, 1.0)
    return Estimate(value, low, high, float(np.sqrt(var_seeds)), float(np.sqrt(var_images)), float(df))


def interval(datasets: list[Cell], kind: str = "acc", level: float = LEVEL, n_boot: int = N_BOOT,
             seed: int = 0) -> Estimate:
    """A method's statistic (mean over datasets of the mean over seeds) with its interval."""
    matrices = [m for c in datasets for m in c.splits.values()]
    if kind == "acc" and len(matrices) == 1 and matrices[0].shape[0] == 1:  # one run, one evaluation
        k, n = int(matrices[0].sum()), matrices[0].size
        low, high = wilson_interval(k, n, level)
        return Estimate(k / n, low, high)
    (reps,) = _image_replicates([(c,) for c in datasets], kind, n_boot, seed)
    est = _combine(reps, level, lowest=0.0)
    k, n = sum(int(m.sum()) for m in matrices), sum(m.size for m in matrices)
    if kind == "acc" and k in (0, n):  # all right or all wrong: no spread to resample
        est.low, est.high = wilson_interval(k, n, level)
    return est


@dataclass
class Comparison:
    a: float
    b: float
    diff: float
    low: float
    high: float
    verdict: str
    n_datasets: int
    n_seeds: int
    n_images: int  # per seed, summed over datasets and splits
    se_seeds: float = 0.0
    se_images: float = 0.0
    mcnemar_p: float | None = None  # accuracy comparisons: exact McNemar over every seed's images, pooled

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("a", "b", "diff", "low", "high", "verdict", "n_datasets",
                                               "n_seeds", "n_images", "se_seeds", "se_images", "mcnemar_p")}


def verdict(low: float, high: float) -> str:
    """On the claim "A > B" from the interval of A - B."""
    if low > 0:
        return "established"
    if high < 0:
        return "refuted"
    return "not established"


def compare(pairs: list[tuple[Cell, Cell]], kind: str = "acc", level: float = LEVEL, n_boot: int = N_BOOT,
            seed: int = 0) -> Comparison:
    """Paired comparison of A and B: each pair is one dataset with the same seeds and test images for both;
    the per-seed differences A - B carry the pairing through both parts of the variance."""
    for a, b in pairs:
        if a.splits.keys() != b.splits.keys() or any(a.splits[s].shape != b.splits[s].shape for s in a.splits):
            raise ValueError("paired cells must hold the same splits, seeds and images")
    ra, rb = _image_replicates(list(pairs), kind, n_boot, seed)
    d = _combine([x - y for x, y in zip(ra, rb)], level, lowest=-1.0)
    p = None
    binary = all(m.dtype == bool for pair in pairs for c in pair for m in c.splits.values())
    if kind == "acc" and binary:  # McNemar needs right / wrong per image (bool), not a change (-1, 0, 1)
        flat = lambda side: np.concatenate([c.splits[s].ravel() for pair in pairs  # noqa: E731
                                            for c in (pair[side],) for s in sorted(c.splits)])
        p = mcnemar_p(flat(0), flat(1))
    return Comparison(a=float(np.mean([r[0].mean() for r in ra])), b=float(np.mean([r[0].mean() for r in rb])),
                      diff=d.value, low=d.low, high=d.high, verdict=verdict(d.low, d.high), n_datasets=len(pairs),
                      n_seeds=min(r.shape[1] for r in ra),
                      n_images=sum(m.shape[1] for a, _ in pairs for s, m in a.splits.items() if "@" not in s),
                      se_seeds=d.se_seeds, se_images=d.se_images, mcnemar_p=p)
