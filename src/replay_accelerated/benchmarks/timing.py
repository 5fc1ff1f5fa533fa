"""Wall time of a step of the standalone benchmarks (serving.py, head.py), after a warm-up."""

import time
from collections.abc import Callable


def step_seconds(step: Callable[[], object], repetitions: int, warmup: int) -> list[float]:
    """Seconds of each of `repetitions` calls of `step`, after `warmup` untimed calls (kernels, caches,
    compilation)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repetitions):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return times
