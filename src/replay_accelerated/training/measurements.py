"""What a run records about itself: epoch times, throughput, memory, hardware, versions."""

import platform
import resource
import statistics
import sys
import time
from importlib import metadata

import lightning as L
import torch

PACKAGES = ("replay-accelerated", "torch", "lightning", "replay-rec", "hydra-core", "omegaconf",
            "numpy", "pandas", "polars", "pyarrow")


class EpochTimer(L.Callback):
    """Wall seconds of each training epoch, without validation (which runs inside the epoch)."""

    def __init__(self, samples_per_epoch: int):
        self.samples_per_epoch = samples_per_epoch
        self.train_seconds: list[float] = []
        self._started: float | None = None

    def on_train_epoch_start(self, trainer, module) -> None:
        self._started = time.perf_counter()

    def _stop(self) -> None:
        if self._started is not None:
            self.train_seconds.append(time.perf_counter() - self._started)
            self._started = None

    def on_validation_epoch_start(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self._stop()

    def on_train_epoch_end(self, trainer, module) -> None:
        self._stop()  # epochs without validation

    def summary(self) -> dict:
        return {
            "train_seconds_per_epoch": [round(s, 3) for s in self.train_seconds],
            "train_samples_per_second": [round(self.samples_per_epoch / s, 1) for s in self.train_seconds],
        }


def median_epoch_seconds(seconds: list[float]) -> float:
    """Median train seconds per epoch without the first (warm-up) epoch, when there is more than one."""
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated on a GPU, else the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return peak_kb / (2**20 if sys.platform == "darwin" else 2**10)


def hardware() -> dict:
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
