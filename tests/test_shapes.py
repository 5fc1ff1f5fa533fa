"""Coarse sizes (acceleration/shapes.py): few distinct shapes, little extra work, on fresh random sizes."""

import numpy as np
import pytest

from replay_accelerated.acceleration.shapes import STEPS_PER_OCTAVE, coarse_size


@pytest.mark.parametrize("step", [1, 8, 64])
def test_coarse_size_covers_the_size_with_little_extra_work(step: int):
    for size in np.random.randint(1, 1_000_000, size=2_000).tolist() + list(range(1, 300)):
        padded = coarse_size(size, step)
        assert padded >= size and padded % step == 0
        assert padded - size < max(step, size / STEPS_PER_OCTAVE), (size, padded)


@pytest.mark.parametrize("step", [8, 64])
def test_coarse_size_gives_few_distinct_sizes_per_power_of_two(step: int):
    for exponent in range(3, 16):
        sizes = {coarse_size(size, step) for size in range(2 ** exponent, 2 ** (exponent + 1))}
        # a grid of max(step, 2^exponent / 4): at most min(4, 2^exponent / step) new sizes in the octave (its top is
        # the next octave's first), and one where the step is wider than the octave
        bound = max(1, min(STEPS_PER_OCTAVE, 2 ** exponent // step))
        assert len(sizes - {2 ** (exponent + 1)}) <= bound, (exponent, sizes)
