"""Does a variant keep the reference's quality? A paired bootstrap over test users that can say "worse".

Two models scored on the same test users differ per user far less than their metrics vary
across users, so the per-user difference (variant - reference, each averaged over its seeds)
is bootstrapped, not the two means separately: users are resampled, and the relative
difference is the mean difference over the reference's mean. From its 95% interval:
- "worse": the whole interval lies below 0;
- "keeps": its lower bound lies above -2% (at most a 2% loss is plausible);
- otherwise "inconclusive (±w%)", w the interval's half-width: more users or seeds are needed.
"""

from dataclasses import dataclass

import numpy as np

TOLERANCE = 0.02  # a relative loss of quality accepted as "keeps"
# A variant keeps quality when no verdict against the headline reference is "worse" and its mean test
# NDCG@10 is at least this share of the reference's.
QUALITY_SHARE = 0.98
LEVEL = 0.95


@dataclass(frozen=True)
class Verdict:
    relative_difference: float  # mean(variant - reference) / mean(reference)
    low: float  # the 95% bootstrap interval of the relative difference
    high: float

    @property
    def label(self) -> str:
        if self.high < 0:
            return "worse"
        if self.low > -TOLERANCE:
            return "keeps"
        return f"inconclusive (±{(self.high - self.low) / 2:.1%})"

    def describe(self) -> str:
        """e.g. "keeps, -0.4% [-1.5%, +0.7%]"."""
        return f"{self.label}, {self.relative_difference:+.1%} [{self.low:+.1%}, {self.high:+.1%}]"


def paired_verdict(variant: np.ndarray, reference: np.ndarray, resamples: int = 2000, seed: int = 0) -> Verdict:
    """Verdict of per-user `variant` values against `reference` values of the same users, in the same order."""
    variant, reference = np.asarray(variant, dtype=float), np.asarray(reference, dtype=float)
    if variant.shape != reference.shape or variant.ndim != 1 or len(variant) == 0:
        raise ValueError(f"need per-user values of the same users, got shapes {variant.shape} and {reference.shape}")
    if reference.sum() == 0:  # no hits at all: a relative difference is undefined
        return Verdict(float("nan"), float("nan"), float("nan"))
    draws = np.random.default_rng(seed).integers(0, len(variant), (resamples, len(variant)))
    # A resample may still miss every hit of the reference; those draws say nothing and are dropped.
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = (variant - reference)[draws].mean(axis=1) / reference[draws].mean(axis=1)
    tail = (1.0 - LEVEL) / 2 * 100
    low, high = np.percentile(relative[np.isfinite(relative)], [tail, 100 - tail])
    return Verdict(float((variant - reference).mean() / reference.mean()), float(low), float(high))
