"""Does a variant keep the reference's quality? A paired two-level bootstrap over seeds and test users
that can say "worse".

Two models scored on the same test users differ per user far less than their metrics vary across users,
so the users are paired: each resample draws one set of users for both sides. But a trained model is
itself a draw: its seed moves the whole mean (by about 15% on our tables), so resampling users alone, as
if each model were fixed, called identical configurations "worse" in 16% of simulated pairs. Each resample
therefore first draws each side's seeds with replacement (independently: the seeds of two variants are
unrelated runs; their spread widened to be unbiased, see _unbiased_seed_spread), averages the drawn seeds
per user, then draws the users, and takes the relative difference: the mean difference over the reference's
mean. From its 95% interval:
- "keeps": its lower bound lies above -2% (at most a 2% loss is plausible), even if it lies wholly below 0;
- "worse": the whole interval lies below 0 (and below -2% at its lower end);
- otherwise "inconclusive (±w%)", w the interval's half-width: more users or seeds are needed.
With fewer than MIN_SEEDS seeds on either side, the spread of the seeds cannot be told from one bad run:
no interval, the label "needs more seeds" and the per-seed means.

Simulated (tests/test_verdict.py: Beta hit probabilities, a seed effect of N(1, 0.15), 3 seeds a side),
identical configurations are called "worse" in 1.0% of pairs with 565 test users (1.6% with less spread
between users), and in about 5% with 6,000, where the seeds' noise dominates and 3 seeds estimate it poorly:
large test sets need more seeds, not more users.
"""

import math
from dataclasses import dataclass

import numpy as np

TOLERANCE = 0.02  # a relative loss of quality accepted as "keeps"
# A variant keeps quality when every verdict against the headline reference is given, none is "worse", and its
# mean test NDCG@10 is at least this share of the reference's.
QUALITY_SHARE = 0.98
LEVEL = 0.95
MIN_SEEDS = 3  # per side, for an interval: with 2, one weak seed is half the sample
CHUNK_VALUES = 1 << 22  # resamples x users held at once, so that large test sets stay in memory


@dataclass(frozen=True)
class Verdict:
    relative_difference: float  # (mean(variant) - mean(reference)) / mean(reference), means over seeds and users
    low: float  # the 95% bootstrap interval of the relative difference (NaN without one)
    high: float
    # Each side's per-seed means, kept only when a side has too few seeds for an interval.
    seed_means: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @property
    def label(self) -> str:
        if self.seed_means is not None:
            return f"needs more seeds ({len(self.seed_means[0])} vs {len(self.seed_means[1])})"
        if self.low > -TOLERANCE:  # first: an interval such as [-0.9%, -0.1%] is a loss within the tolerance
            return "keeps"
        if self.high < 0:
            return "worse"
        return f"inconclusive (±{(self.high - self.low) / 2:.1%})"

    def describe(self) -> str:
        """e.g. "keeps, -0.4% [-1.5%, +0.7%]", or "needs more seeds (1 vs 3), -3.1%; seeds 0.052 vs 0.05 / ..."."""
        if self.seed_means is not None:
            variant, reference = (" / ".join(f"{value:.3g}" for value in side) for side in self.seed_means)
            return f"{self.label}, {self.relative_difference:+.1%}; seeds {variant} vs {reference}"
        return f"{self.label}, {self.relative_difference:+.1%} [{self.low:+.1%}, {self.high:+.1%}]"


def paired_verdict(variant: np.ndarray, reference: np.ndarray, resamples: int = 2000, seed: int = 0,
                   min_seeds: int = MIN_SEEDS) -> Verdict:
    """Verdict of `variant` against `reference`: per-user values [seeds, users] of each side's seeds (a 1-D array
    is one seed), the same users in the same order on both sides. With one seed a side and `min_seeds=1` this
    is a bootstrap over users only, which treats the trained models as fixed."""
    variant, reference = (np.atleast_2d(np.asarray(side, dtype=float)) for side in (variant, reference))
    if variant.ndim != 2 or reference.ndim != 2 or variant.shape[1] != reference.shape[1] \
            or 0 in (*variant.shape, *reference.shape):
        raise ValueError(f"need per-user values [seeds, users] of the same users, got shapes {variant.shape} and "
                         f"{reference.shape}")
    if reference.sum() == 0:  # no hits at all: a relative difference is undefined
        return Verdict(math.nan, math.nan, math.nan)
    point = float((variant.mean() - reference.mean()) / reference.mean())
    if min(len(variant), len(reference)) < min_seeds:
        return Verdict(point, math.nan, math.nan,
                       (tuple(map(float, variant.mean(axis=1))), tuple(map(float, reference.mean(axis=1)))))
    rng = np.random.default_rng(seed)
    variant, reference = _unbiased_seed_spread(variant), _unbiased_seed_spread(reference)
    users = variant.shape[1]
    chunk = max(1, CHUNK_VALUES // users)
    relative = np.concatenate([_resample(variant, reference, min(chunk, resamples - start), rng)
                               for start in range(0, resamples, chunk)])
    tail = (1.0 - LEVEL) / 2 * 100
    low, high = np.percentile(relative[np.isfinite(relative)], [tail, 100 - tail])
    return Verdict(point, float(low), float(high))


def _unbiased_seed_spread(side: np.ndarray) -> np.ndarray:
    """`side` [seeds, users] with each seed's deviation from the per-user mean widened by sqrt(n / (n - 1)).

    The mean of n seeds drawn with replacement varies by (n - 1) / n of what a fresh set of n seeds would: a third
    too little at 3 seeds. Widened, it varies as much (the mean itself is unchanged)."""
    seeds = len(side)
    if seeds == 1:
        return side
    mean = side.mean(axis=0)
    return mean + (side - mean) * math.sqrt(seeds / (seeds - 1))


def _resample(variant: np.ndarray, reference: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` relative differences, each of a draw of seeds per side and then one draw of users for both."""
    users = variant.shape[1]
    drawn = rng.integers(0, users, (count, users))  # the pairing: the same users on both sides
    # How often each resample drew each user, [count, users] (offset rows, so that one bincount counts them all):
    # a side's mean is then a product with its [seeds, users] values, not a gather of [count, users] values.
    times = np.bincount((drawn + users * np.arange(count)[:, None]).ravel(), minlength=count * users)
    times = times.reshape(count, users).astype(float)
    means = []
    for side in (variant, reference):
        seeds = len(side)
        weights = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=count) / seeds  # [count, seeds]
        means.append((weights * (times @ side.T)).sum(axis=1) / users)  # mean over drawn users of drawn seeds
    # A resample may still miss every hit of the reference; those draws say nothing and are dropped (NaN, inf).
    with np.errstate(divide="ignore", invalid="ignore"):
        return (means[0] - means[1]) / means[1]
