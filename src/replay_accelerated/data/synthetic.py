"""A synthetic user-item interaction log with real sequential structure.

Why this dataset exists
-----------------------
The toolkit trains sequential recommenders (SASRec, BERT4Rec) and needs a default
dataset that ships with the code, works offline and, above all, rewards reading the
sequence. Random or purely popularity-driven logs do not: on them the best any model
can do is rediscover the popularity ranking, so a broken sequential model and a
working one score the same. On this log a model that reads the sequence can predict
the next item (mostly a successor of the last one) while a popularity baseline cannot,
so a working sequential model must beat popularity by a wide margin.

How the log is built
--------------------
* Items are split into ``n_clusters`` clusters of equal size (think genres) and get a
  Zipf-like popularity: the item of popularity rank ``r`` (1 = most popular) has
  weight ``1 / r ** popularity_exponent``.
* Every item has a fixed set of three successors in its own cluster (think "next
  episode", "the sequel"), with fixed weights 0.6 / 0.3 / 0.1. Successors are chosen
  uniformly inside the cluster, regardless of popularity, so knowing the last item
  tells a model something that knowing popularity does not.
* A user's first item is drawn from popularity. At every later step, with probability
  ``transition_prob`` the user moves to a successor of the current item; otherwise
  they "jump" to an item drawn from the global popularity distribution.
* A user never consumes the same item twice: when the drawn item is already in the
  user's history the step becomes a jump, redrawn from popularity until the item is
  new (a user who has already seen most popular items gets a uniform draw among the
  unseen ones instead). Sequence lengths therefore come out exactly as drawn.
* Lengths are at least ``min_length`` and have mean ``mean_length``, clipped at
  ``max_length`` (the clipping lowers the mean slightly). ``length_distribution``
  chooses their shape: ``geometric`` (the default, a shifted geometric distribution:
  most users short, a few long) or ``lognormal``, a shifted log-normal distribution
  whose median is ``median_length``: a long tail like real logs (MovieLens-20M: at
  least 20 ratings per user, median 68, mean 144, a few users with thousands).
* Ratings are independent of the item: 80% are 4 or 5, so the usual ``rating > 3``
  filter keeps most events.
* Users start at random moments within one year of a fixed epoch and each event
  follows the previous one after a random gap (median six hours, from minutes to
  30 days), so a global time split cuts through many users' histories.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same arguments always
give the same frame. The simulation is vectorised over users (one loop over positions,
a bit set of every user's seen items) and keeps items in one flat array, so memory and
time grow with the number of events: a MovieLens-20M-sized log (20 million events, up
to 9,254 per user) takes about 10 s and 2.5 GB on 2 CPU cores.
"""

import numpy as np
import pandas as pd

from replay_accelerated.config import Generator
from replay_accelerated.errors import ConfigError

# Transition weights of an item's successors, strongest first. Three successors keep
# the right answer inside any top-10 list while still asking the model to rank them.
SUCCESSOR_WEIGHTS = np.array([0.6, 0.3, 0.1])

# Probabilities of the ratings 1, 2, 3, 4, 5.
RATING_PROBABILITIES = np.array([0.04, 0.06, 0.10, 0.35, 0.45])

# 2020-09-13: a fixed epoch, so the log does not depend on the day it is generated.
EPOCH_S = 1_600_000_000
START_SPREAD_S = 365 * 24 * 3600

# Gaps between a user's events are log-normal: median six hours, and a spread wide
# enough to give anything from minutes (binge watching) to weeks (coming back later).
# A typical history then spans about a month, so a global time split near the end of
# the log cuts through roughly one user in eight. The cap keeps a single unlucky draw
# from pushing a user's history years ahead.
GAP_MEDIAN_S = 6 * 3600
GAP_LOG_SIGMA = 2.0
GAP_MAX_S = 30 * 24 * 3600

# How many times a repeated item is redrawn from popularity before falling back to a
# uniform draw among the items the user has not seen (only users who have already
# seen most of the popular items ever get there).
POPULARITY_REDRAWS = 10

LENGTH_DISTRIBUTIONS = ("geometric", "lognormal")

# Largest per-user bit set of seen items (n_users x n_items / 8 bytes); larger logs keep a set of keys.
BIT_SET_BYTES = 2**30


def generate_interactions(settings: Generator) -> pd.DataFrame:
    """Generate the interaction log described in the module docstring, with the sizes of `settings`
    (the `dataset.generator` config).

    Returns a frame with columns ``user_id`` (int64, 1-based), ``item_id`` (int64,
    1-based), ``rating`` (float32, whole numbers 1..5) and ``timestamp`` (int64 unix
    seconds), sorted by user and then by time. Raises ``ConfigError`` on settings
    that cannot produce such a log (`generator_problem`).
    """
    problem = generator_problem(settings)
    if problem is not None:
        raise ConfigError(f"dataset.generator: {problem}")
    n_users, n_items, seed = settings.n_users, settings.n_items, settings.seed
    rng = np.random.default_rng(seed)
    popularity_cdf = _popularity_cdf(n_items, settings.popularity_exponent, rng)
    successors = _pick_successors(n_items, settings.n_clusters, rng)
    lengths = _draw_lengths(n_users, settings.length_distribution, settings.mean_length, settings.median_length,
                            settings.min_length, settings.max_length, rng)
    items = _simulate_sequences(lengths, successors, popularity_cdf, settings.transition_prob, rng)
    ratings = 1 + _sample(np.cumsum(RATING_PROBABILITIES), len(items), rng)
    return pd.DataFrame(
        {
            "user_id": np.repeat(np.arange(1, n_users + 1, dtype=np.int64), lengths),
            "item_id": items + 1,
            "rating": ratings.astype(np.float32),
            "timestamp": _timestamps(lengths, rng),
        }
    )


def generator_problem(settings: Generator) -> str | None:
    """What makes `settings` unable to produce a log, or None; config validation calls it before any work."""
    n_users, n_items, n_clusters = settings.n_users, settings.n_items, settings.n_clusters
    min_length, mean_length, max_length = settings.min_length, settings.mean_length, settings.max_length
    length_distribution, median_length = settings.length_distribution, settings.median_length
    transition_prob, popularity_exponent = settings.transition_prob, settings.popularity_exponent
    n_successors = len(SUCCESSOR_WEIGHTS)
    lognormal = length_distribution == "lognormal"
    rules = [
        (
            length_distribution in LENGTH_DISTRIBUTIONS,
            f"length_distribution must be one of {list(LENGTH_DISTRIBUTIONS)}, got '{length_distribution}'",
        ),
        (
            not lognormal or median_length is not None,
            "length_distribution=lognormal needs median_length (min_length < median_length <= mean_length)",
        ),
        (
            lognormal or median_length is None,
            f"median_length is used only by length_distribution=lognormal; set it to null "
            f"for length_distribution={length_distribution}",
        ),
        (
            not lognormal or median_length is None or min_length < median_length <= mean_length,
            f"lengths must satisfy min_length < median_length <= mean_length, "
            f"got {min_length}, {median_length}, {mean_length}",
        ),
        (n_users >= 1, f"n_users must be at least 1, got {n_users}"),
        (n_clusters >= 1, f"n_clusters must be at least 1, got {n_clusters}"),
        (
            n_clusters >= 1 and n_items // n_clusters > n_successors,
            f"n_items ({n_items}) must be at least {n_successors + 1} x n_clusters ({n_clusters}) so that "
            f"every cluster holds an item and its {n_successors} successors; raise n_items or lower n_clusters",
        ),
        (
            1 <= min_length <= mean_length <= max_length,
            f"lengths must satisfy 1 <= min_length <= mean_length <= max_length, "
            f"got {min_length}, {mean_length}, {max_length}",
        ),
        (
            max_length <= n_items,
            f"max_length ({max_length}) cannot exceed n_items ({n_items}): users never repeat an item",
        ),
        (0 <= transition_prob <= 1, f"transition_prob must be within [0, 1], got {transition_prob}"),
        (popularity_exponent >= 0, f"popularity_exponent must be non-negative, got {popularity_exponent}"),
    ]
    return next((message for holds, message in rules if not holds), None)


def _sample(cdf: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``size`` indices from the distribution whose cumulative sums are ``cdf``."""
    # min() guards against the last cumulative sum rounding to just below 1.
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _popularity_cdf(n_items: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    # Ranks are shuffled so that popularity is unrelated to item ids and clusters.
    ranks = rng.permutation(n_items) + 1
    weights = ranks.astype(np.float64) ** -exponent
    return np.cumsum(weights) / weights.sum()


def _pick_successors(n_items: int, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Return an ``(n_items, 3)`` array: each item's successors, strongest first."""
    n_successors = len(SUCCESSOR_WEIGHTS)
    # Dealing a shuffled deck makes clusters random and of equal size (give or take one).
    cluster_of = rng.permutation(n_items) % n_clusters
    successors = np.empty((n_items, n_successors), dtype=np.int64)
    for cluster in range(n_clusters):
        members = np.flatnonzero(cluster_of == cluster)
        size = len(members)
        # A member's successors sit at distinct non-zero offsets from it in the cluster,
        # so they are distinct and never the item itself. Rows that drew the same offset
        # twice are redrawn; with at least 4 members a row succeeds with odds >= 2/9.
        offsets = rng.integers(1, size, (size, n_successors))
        while True:
            ordered = np.sort(offsets, axis=1)
            clashing = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
            if not clashing.any():
                break
            offsets[clashing] = rng.integers(1, size, (clashing.sum(), n_successors))
        successors[members] = members[(np.arange(size)[:, None] + offsets) % size]
    return successors


def _draw_lengths(
    n_users: int,
    distribution: str,
    mean_length: float,
    median_length: float | None,
    min_length: int,
    max_length: int,
    rng: np.random.Generator,
) -> np.ndarray:
    if distribution == "lognormal":
        # min_length + LogNormal(mu, sigma) has median min_length + exp(mu) and mean
        # min_length + exp(mu + sigma^2 / 2); these mu and sigma give median_length and
        # mean_length. Rounding to whole events moves neither by more than half an event.
        mu = np.log(median_length - min_length)
        sigma = np.sqrt(2.0 * np.log((mean_length - min_length) / (median_length - min_length)))
        extra = np.rint(rng.lognormal(mu, sigma, n_users)).astype(np.int64)
        return np.minimum(min_length + extra, max_length)
    # min_length - 1 + Geometric(p) has mean min_length - 1 + 1/p, which is mean_length
    # for this p.
    p = 1.0 / (mean_length - min_length + 1)
    return np.minimum(min_length - 1 + rng.geometric(p, n_users), max_length)


def _simulate_sequences(
    lengths: np.ndarray,
    successors: np.ndarray,
    popularity_cdf: np.ndarray,
    transition_prob: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return every user's 0-based items in order, user after user (``lengths.sum()`` items).

    Step ``t`` is simulated for all users at once: the loop runs over positions in the
    sequence, never over users. Memory and work grow with the number of events, not with
    users x longest sequence: items go straight into one flat array, and whether a user
    has seen an item is one bit of a per-user bit set (n_users x n_items / 8 bytes), or, where
    that would exceed BIT_SET_BYTES (a million items and 200k users: 25 GB), an entry of a set
    of (user, item) keys, which grows with the events instead.
    """
    n_users = len(lengths)
    successor_cdf = np.cumsum(SUCCESSOR_WEIGHTS)
    first = np.cumsum(lengths) - lengths  # where each user's sequence starts in `items`
    items = np.empty(lengths.sum(), dtype=np.int64)
    n_items = len(popularity_cdf)
    seen = _SeenItems(n_users, n_items) if n_users * n_items / 8 <= BIT_SET_BYTES else _SeenItemKeys(n_items)
    active = np.arange(n_users)  # users still drawing, in user order
    current = _sample(popularity_cdf, n_users, rng)
    items[first] = current
    seen.add(active, current)
    for step in range(1, lengths.max()):
        still_active = lengths[active] > step
        active, current = active[still_active], current[still_active]
        following = successors[current, _sample(successor_cdf, len(active), rng)]
        jumping = rng.random(len(active)) >= transition_prob
        following[jumping] = _sample(popularity_cdf, jumping.sum(), rng)
        current = _replace_repeats(following, active, seen, popularity_cdf, rng)
        items[first[active] + step] = current
        seen.add(active, current)
    return items


class _SeenItems:
    """One bit per (user, item): has the user already consumed the item."""

    def __init__(self, n_users: int, n_items: int):
        self.n_items = n_items
        self.row_bytes = (n_items + 7) // 8
        self.bits = np.zeros(n_users * self.row_bytes, dtype=np.uint8)

    def _where(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return users * self.row_bytes + (items >> 3), (items & 7).astype(np.uint8)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        byte, bit = self._where(users, items)
        return ((self.bits[byte] >> bit) & 1).astype(bool)

    def add(self, users: np.ndarray, items: np.ndarray) -> None:
        # Every user appears at most once, so no byte is written twice in one call.
        byte, bit = self._where(users, items)
        self.bits[byte] |= np.left_shift(np.uint8(1), bit)

    def unseen(self, user: int) -> np.ndarray:
        """The items ``user`` has not consumed, in increasing order."""
        row = self.bits[user * self.row_bytes : (user + 1) * self.row_bytes]
        return np.flatnonzero(np.unpackbits(row, count=self.n_items, bitorder="little") == 0)


class _SeenItemKeys:
    """The same as _SeenItems for catalogs too large for a bit set: a set of keys user * n_items + item."""

    def __init__(self, n_items: int):
        self.n_items = n_items
        self.keys: set[int] = set()

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = self.keys
        return np.fromiter((key in keys for key in (users * self.n_items + items).tolist()), dtype=bool,
                           count=len(users))

    def add(self, users: np.ndarray, items: np.ndarray) -> None:
        self.keys.update((users * self.n_items + items).tolist())

    def unseen(self, user: int) -> np.ndarray:
        """The items ``user`` has not consumed, in increasing order (a scan of every key: rarely needed)."""
        low = user * self.n_items
        mine = [key - low for key in self.keys if low <= key < low + self.n_items]
        return np.setdiff1d(np.arange(self.n_items), mine)


def _replace_repeats(
    candidates: np.ndarray,
    users: np.ndarray,
    seen: "_SeenItems | _SeenItemKeys",
    popularity_cdf: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Replace every candidate its user has already seen by an unseen item."""
    repeated = np.flatnonzero(seen.contains(users, candidates))
    for _ in range(POPULARITY_REDRAWS):
        if len(repeated) == 0:
            return candidates
        candidates[repeated] = _sample(popularity_cdf, len(repeated), rng)
        repeated = repeated[seen.contains(users[repeated], candidates[repeated])]
    for row in repeated:
        candidates[row] = rng.choice(seen.unseen(users[row]))
    return candidates


def _timestamps(lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return every event's unix time, user after user, strictly increasing per user."""
    starts = EPOCH_S + rng.integers(0, START_SPREAD_S, len(lengths))
    # At least one second between events, so a user's timestamps never tie.
    gaps = 1 + np.floor(rng.lognormal(np.log(GAP_MEDIAN_S), GAP_LOG_SIGMA, lengths.sum())).astype(np.int64)
    gaps = np.minimum(gaps, GAP_MAX_S)
    # One cumulative sum over all events, with each user's first gap replaced by their
    # start time, then each user's running total shifted so that it begins at the start.
    first = np.cumsum(lengths) - lengths
    gaps[first] = starts
    elapsed = np.cumsum(gaps)
    return elapsed - np.repeat(elapsed[first] - starts, lengths)
