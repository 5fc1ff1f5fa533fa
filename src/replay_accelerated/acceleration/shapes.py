"""Few distinct tensor shapes, for libraries that build a kernel per shape.

oneDNN, which runs bf16 matrix products on a CPU, builds and caches a kernel for every distinct
shape it meets, each holding its own buffers (packed weights, scratch space); torch.compile
builds a graph per shape, and GPU kernels pick tiles per shape. Sizes that change from batch
to batch (the number of target rows, a bucketed batch's width) are therefore rounded up to a
coarse grid: steps of at least `step`, and at most `STEPS_PER_OCTAVE` sizes between two powers
of two. The extra work is under 1 / STEPS_PER_OCTAVE of the size (and under `step` elements).

Measured (SASRec, partial MovieLens-1M, bf16 on a Sapphire Rapids CPU, 80 steps): with target rows
rounded to multiples of 64, training took 737 MB against 459 MB in fp32; with the same head run
at a fixed shape (every position), 407 MB at the same step time.
"""

STEPS_PER_OCTAVE = 4


def round_up(size: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is at least `size`."""
    return -(-size // multiple) * multiple


def coarse_size(size: int, step: int) -> int:
    """`size` rounded up to a multiple of max(step, 2^floor(log2 size) / STEPS_PER_OCTAVE)."""
    return round_up(size, max(step, (1 << (max(size, 1).bit_length() - 1)) // STEPS_PER_OCTAVE))
