"""What a run records about itself: epoch times, throughput, validation history, memory,
the data-preparation share of a step, hardware and versions.

These are measurements for benchmarks, taken the same way for our models and for RePlay's
(training/replay_baseline.py), so that the two can stand in one table.
"""

import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import lightning as L
import torch

from replay_accelerated.errors import UserError

PACKAGES = ("replay-accelerated", "torch", "lightning", "replay-rec", "hydra-core", "omegaconf",
            "numpy", "pandas", "polars", "pyarrow")


class EpochTimer(L.Callback):
    """Wall seconds of each training epoch, without validation (which runs inside the epoch),
    and after each validation: the wall seconds since training started and the logged validation
    metrics (what "time to target" is read from). `metrics` maps the names recorded, e.g.
    "ndcg@10", to the names the module logs them under, e.g. "val_ndcg@10"."""

    def __init__(self, samples_per_epoch: int, metrics: dict[str, str]):
        self.samples_per_epoch = samples_per_epoch
        self.metrics = metrics
        self.train_seconds: list[float] = []
        self.validation_history: list[dict] = []
        self._fit_started = 0.0
        self._started: float | None = None
        self._validation_started = 0.0

    def on_fit_start(self, trainer, module) -> None:
        # A resumed run continues the clock of the run it resumes.
        before = self.validation_history[-1]["elapsed_seconds"] if self.validation_history else 0.0
        self._fit_started = time.perf_counter() - before

    def state_dict(self) -> dict:  # saved in checkpoints, so that a resumed run keeps the measurements
        return {"train_seconds": self.train_seconds, "validation_history": self.validation_history}

    def load_state_dict(self, state: dict) -> None:
        self.train_seconds = list(state["train_seconds"])
        self.validation_history = list(state["validation_history"])

    def on_validation_end(self, trainer, module) -> None:
        # After every callback and the module have logged this epoch's validation metrics.
        if trainer.sanity_checking:
            return
        logged = trainer.callback_metrics
        now = time.perf_counter()
        self.validation_history.append({
            "epoch": trainer.current_epoch + 1,
            "elapsed_seconds": round(now - self._fit_started, 3),
            "validation_seconds": round(now - self._validation_started, 3),
            **{name: float(logged[key]) for name, key in self.metrics.items() if key in logged},
        })

    def on_train_epoch_start(self, trainer, module) -> None:
        self._started = time.perf_counter()

    def _stop(self) -> None:
        if self._started is not None:
            self.train_seconds.append(time.perf_counter() - self._started)
            self._started = None

    def on_validation_epoch_start(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self._stop()
            self._validation_started = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self._stop()  # epochs without validation

    def summary(self) -> dict:
        return {
            "train_seconds_per_epoch": [round(s, 3) for s in self.train_seconds],
            "train_samples_per_second": [round(self.samples_per_epoch / s, 1) for s in self.train_seconds],
            "validation_history": self.validation_history,
        }


def data_preparation_share(batches: Iterator, prepare: Callable[[Any], Any], step: Callable[[Any], None],
                           device: torch.device, n_batches: int = 10) -> float:
    """Share of a training step spent making its batch, timed over `n_batches` after training.

    prepare(batch from the loader) -> what the model trains on (on the device); timed together
    with waiting for the loader. step(prepared) runs forward, loss and backward. The device is
    synchronised around each part here, outside training, so the split is exact on a GPU too.
    """
    preparing = computing = 0.0
    for _ in range(n_batches):
        synchronize(device)
        started = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            break
        prepared = prepare(batch)
        synchronize(device)
        prepared_at = time.perf_counter()
        step(prepared)
        synchronize(device)
        preparing += prepared_at - started
        computing += time.perf_counter() - prepared_at
    return preparing / (preparing + computing) if computing else float("nan")


def compile_seconds() -> float:
    """Seconds this process spent in torch.compile so far: tracing and compiling the forward graphs,
    and the backward graphs (compiled at their first backward). Part of the first epochs' time."""
    metrics = torch._dynamo.utils.compilation_time_metrics  # seconds per compilation phase
    return sum(sum(metrics.get(phase, [])) for phase in ("_compile.compile_inner", "compile_fx.<locals>.bw_compiler"))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_after_first_epoch(per_epoch: list[float]) -> float:
    """Median of a per-epoch measurement without the first (warm-up) epoch, when there is more than one."""
    return statistics.median(per_epoch[1:] if len(per_epoch) > 1 else per_epoch)


class TrainingMemory:
    """Peak memory of the whole process and of training alone.

    Created just before training: it notes the process's memory then and resets the peak
    counter (CUDA's max allocated; on Linux the resident-set high-water mark, through
    /proc/self/clear_refs), so that `summary()` after training can tell what training itself
    needed (`training_memory_mb`: the peak during training minus the memory before it; on a CPU
    ~0.5 GB of libraries otherwise hide the difference between variants) from the process's
    peak (`peak_memory_mb`: CUDA max allocated on a GPU, else the peak resident set size).
    Where the peak cannot be reset, training's peak is the process's peak since it started.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_before = _peak_mb(device)
        self.before = _current_mb(device)
        _reset_peak(device)

    def summary(self) -> dict:
        peak = _peak_mb(self.device)
        return {"peak_memory_mb": round(max(self.peak_before, peak), 1),
                "training_memory_mb": round(max(peak - self.before, 0.0), 1)}


def _current_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _proc_status_mb("VmRSS") or _peak_mb(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return peak_kb / (2**20 if sys.platform == "darwin" else 2**10)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM, which ru_maxrss reports (Linux)
    except OSError:
        pass


def available_memory_bytes(device: torch.device) -> float | None:
    """Memory a run could still allocate on `device`: CUDA's free memory, else the system's MemAvailable
    (None where neither can be read)."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    kilobytes = _proc_kilobytes("/proc/meminfo", "MemAvailable")
    return None if kilobytes is None else kilobytes * 1024.0


def _proc_status_mb(field: str) -> float | None:
    kilobytes = _proc_kilobytes("/proc/self/status", field)
    return None if kilobytes is None else kilobytes / 2**10


def _proc_kilobytes(path: str, field: str) -> int | None:
    """The value of a "<field>: <n> kB" line of a Linux /proc file (None where it cannot be read)."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class StepTimer(L.Callback):
    """Times `steps` training steps after `warmup` steps (the bench's steps mode, `mode.steps`).

    The device is synchronised only at the two ends of the timed window, so the steps inside run as
    in training. `count(batch) -> (samples, real tokens)` counts what a batch holds (real tokens:
    items, not padding; a tensor on the batch's device is summed there and read once, in `summary`);
    `batches_per_epoch` extrapolates an epoch's time from the step time.
    """

    def __init__(self, warmup: int, steps: int, count: Callable[[Any], tuple[int, int]], batches_per_epoch: int):
        self.warmup, self.steps, self.count, self.batches_per_epoch = warmup, steps, count, batches_per_epoch
        self.samples = self.tokens = 0
        self._started = self.seconds = None

    def on_train_batch_start(self, trainer, module, batch, batch_index: int) -> None:
        if batch_index == self.warmup:
            synchronize(trainer.strategy.root_device)
            self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index: int) -> None:
        if batch_index < self.warmup:
            return
        samples, tokens = self.count(batch)
        self.samples, self.tokens = self.samples + int(samples), self.tokens + tokens  # tokens: no read per step
        if batch_index == self.warmup + self.steps - 1:
            synchronize(trainer.strategy.root_device)
            self.seconds = time.perf_counter() - self._started

    def summary(self) -> dict:
        step_seconds = self.seconds / self.steps
        return {
            "timed_steps": self.steps,
            "warmup_steps": self.warmup,
            "step_seconds": round(step_seconds, 5),
            "train_samples_per_second": round(self.samples / self.seconds, 1),
            "train_tokens_per_second": round(float(self.tokens) / self.seconds, 1),
            # Labelled: an epoch of this many steps was not run, only timed in part.
            "extrapolated_train_seconds_per_epoch": round(step_seconds * self.batches_per_epoch, 3),
        }


def timed_steps_trainer_args(steps: int, warmup: int, batches_per_epoch: int) -> dict:
    """Lightning Trainer arguments of the steps mode: warm-up plus timed steps of one epoch, no validation and
    no checkpoint (Lightning's default one would land in the working directory, the size of the model)."""
    if warmup + steps > batches_per_epoch:
        raise UserError(f"an epoch holds {batches_per_epoch} batches, fewer than mode.warmup_steps ({warmup}) + "
                        f"mode.steps ({steps}); lower them (or the batch size)")
    return {"max_epochs": 1, "limit_train_batches": warmup + steps, "limit_val_batches": 0,
            "enable_checkpointing": False}


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the ones that decide CPU matmul speed


def hardware() -> dict:
    gpu = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if gpu else None,
        "gpu_capability": ".".join(map(str, torch.cuda.get_device_capability())) if gpu else None,
    }


def cpu_flags(names: tuple[str, ...] = CPU_FLAGS) -> list[str]:
    """Which of `names` (default CPU_FLAGS) this CPU has (from /proc/cpuinfo; none where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in names if flag in present]
    except OSError:
        pass
    return []


def cpu_model() -> str:
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
