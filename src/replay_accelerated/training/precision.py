"""The numeric precision a run trains in, chosen for the machine it runs on.

`model.params.training_params.precision: auto` (the default) picks the fastest precision the
training device runs natively:
- bf16-mixed on a CUDA device with native bfloat16 (compute capability 8.0, Ampere, and later; a T4
  or V100 only emulates it) and on a CPU with AVX512-BF16 or AMX (`native_bf16`);
- 16-mixed (fp16 with loss scaling) on a CUDA device without bfloat16;
- 32-true everywhere else.
Without native support bf16 is emulated and much slower than fp32 (37x for a matrix product on an
AVX2-only AMD EPYC), so `auto` never picks it there. An explicit bf16 precision on such a machine
still runs, with one warning that names the hardware and the slow-down measured by a small probe.
RePlay's models (the baselines) train in `REPLAY_PRECISIONS` only, so their `auto` is 32-true where ours is 16-mixed.
A run computes in bf16 through its precision or through bf16 parameters (`computes_in_bf16`).

The decision is made once and passed down as values: `Bf16Support` looks the device up once, and
`decide_precision` turns a configured precision into the `Precision` a run trains in. mode=train decides its run's
(`run_precision`) for our model and RePlay's alike, and hands it to training (`Precision.check_runs_on`); the bench
looks the device up once and decides every variant's `best` and skips from it.
"""

import math
import os
import statistics
import time
from dataclasses import dataclass
from functools import cached_property

import torch

from replay_accelerated.config import REPLAY_IMPLEMENTATIONS, AccelerationConfig
from replay_accelerated.errors import ConfigError
from replay_accelerated.training.measurements import cpu_flags, cpu_model, synchronize

AUTO = "auto"
# `precision`: auto, or what Lightning takes (null: 32-true).
PRECISIONS = (AUTO, None, "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64", "64-true")
# A trait of RePlay's models (model.implementation in REPLAY_IMPLEMENTATIONS, the baselines): they are measured in
# fp32 and bf16-mixed only, so config_values.py refuses the rest for their rows and their `auto` never means fp16.
REPLAY_PRECISIONS = (AUTO, None, "32", "32-true", "bf16-mixed")


def precisions_of(implementation: str) -> tuple:
    """The precisions a model of `implementation` (`model.implementation`) trains in."""
    return REPLAY_PRECISIONS if implementation in REPLAY_IMPLEMENTATIONS else PRECISIONS


def training_device(trainer) -> torch.device:
    """The device a run with these `trainer` settings trains on (Lightning's `auto` prefers a GPU).

    A GPU asked for on a machine without one stops the run here, where every mode that trains resolves its
    device before any work; later it would fail deep in a CUDA call (the memory probe's, or Lightning's
    "Torch not compiled with CUDA enabled")."""
    if trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={trainer.accelerator} but this machine has no CUDA device "
                          f"({_why_no_cuda()}); use trainer.accelerator=cpu or auto")
    wants_gpu = trainer.accelerator in ("gpu", "cuda") or trainer.accelerator == "auto" and torch.cuda.is_available()
    return torch.device("cuda" if wants_gpu else "cpu")


def _why_no_cuda() -> str:
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # set from env.CUDA_VISIBLE_DEVICES by apply_env
    hidden_by = f" with CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
    return f"torch {torch.__version__} is built with CUDA {torch.version.cuda}, but no GPU is visible{hidden_by}"


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` multiplies bfloat16 natively, and why."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        # By default torch also counts GPUs that only emulate bf16 (T4, V100), where it is slower than fp16.
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} supports bfloat16"
        return False, f"no native bf16 on {name}"
    flags = [flag for flag in cpu_flags() if flag.endswith("bf16")]
    if flags:
        return True, f"{cpu_model()} has {' and '.join(flags)}"
    return False, f"no native bf16 on {cpu_model()} (no avx512_bf16 or amx_bf16)"


@dataclass(frozen=True)
class Bf16Support:
    """Whether the training `device` multiplies bfloat16 natively, and why (`native_bf16`): made once per run and
    passed to every precision decision for that device. Looked up on first use, at most once: a decision that does
    not need it (an explicit fp32) touches no CUDA device, as before."""

    device: torch.device

    @cached_property
    def _lookup(self) -> tuple[bool, str]:
        return native_bf16(self.device)

    @property
    def native(self) -> bool:
        return self._lookup[0]

    @property
    def why(self) -> str:
        return self._lookup[1]


@dataclass(frozen=True)
class Precision:
    """A run's precision, decided once (`decide_precision`): as configured (`auto`, a Lightning precision, or
    null), the Lightning precision it trains in (`used`), and why ("auto: <hardware>" or "configured")."""

    configured: str | None
    used: str
    why: str

    def record(self) -> dict:
        """run.json's `precision`."""
        return {"configured": self.configured, "used": self.used, "why": self.why}

    def check_runs_on(self, device: torch.device) -> None:
        """Stop before training if `device` (where Lightning placed the model) cannot run `used` at all."""
        key = "model.params.training_params.precision"
        if self.used.startswith("bf16") and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"{key}={self.used}, but {torch.cuda.get_device_name(device)} has no bfloat16 "
                              f"support; use {key}=16-mixed (fp16 with loss scaling) or 32")
        if self.used.startswith("16") and device.type != "cuda":
            raise ConfigError(f"{key}={self.used} needs a CUDA device (Lightning has no fp16 autocast on "
                              f"{device.type}); use {key}=bf16-mixed or 32")


def computes_in_bf16(config) -> bool:
    """Whether a composed run config (a DictConfig, or the `config` of a run.json) multiplies in bfloat16:
    through a bf16 training precision (bf16-mixed, bf16-true) or through bf16 parameters
    (`acceleration...dtype: bf16` casts the model whatever the precision, so 32-true then computes in bf16)."""
    precision = str(config["model"]["params"]["training_params"]["precision"] or "32-true")
    acceleration = config.get("acceleration") or {}
    dtype = acceleration.get("model", {}).get("acceleration_config", {}).get("dtype", AccelerationConfig.dtype)
    return precision.startswith("bf16") or dtype == "bf16"


def decide_precision(configured: str | None, implementation: str, bf16: Bf16Support) -> Precision:
    """The precision a model of `implementation` configured with `configured` (a Lightning precision, `auto`, or
    null for fp32) trains in on `bf16.device`; warns when it is bf16 that this device only emulates.
    `auto` is bf16-mixed where bf16 is native, else 16-mixed on a CUDA device for a model that trains in it (not
    RePlay's: `precisions_of`), else 32-true."""
    if configured == AUTO:
        if bf16.native:
            used, why = "bf16-mixed", bf16.why
        elif bf16.device.type == "cuda" and "16-mixed" in precisions_of(implementation):
            used, why = "16-mixed", f"{bf16.why}; fp16 with loss scaling instead"
        else:
            used, why = "32-true", bf16.why
        return Precision(configured, used, f"auto: {why}")
    used = str(configured or "32-true")
    if used.startswith("bf16") and not bf16.native:
        _warn_emulated_bf16(bf16)
    return Precision(configured, used, "configured")


def run_precision(cfg) -> Precision:
    """The one precision decision of a composed run config, for its training device (`training_device`)."""
    return decide_precision(cfg.model.params.training_params.precision, cfg.model.implementation,
                            Bf16Support(training_device(cfg.trainer)))


_warned: set[str] = set()


def _warn_emulated_bf16(bf16: Bf16Support) -> None:
    device, why = bf16.device, bf16.why
    if device.type in _warned:
        return
    _warned.add(device.type)
    slowdown = matmul_flops_per_second(device, 64, bf16=False, repetitions=3, min_seconds=0.01) / \
        matmul_flops_per_second(device, 64, bf16=True, repetitions=3, min_seconds=0.01)
    print(f"Warning: bf16 precision without native support ({why}): a bf16 matrix product runs {slowdown:.2f}x "
          f"slower than fp32 here, so training will be slower, not faster; set "
          f"model.params.training_params.precision=auto (or 32-true)", flush=True)


def matmul_flops_per_second(device: torch.device, hidden_size: int, bf16: bool, repetitions: int = 5,
                            min_seconds: float = 0.05) -> float:
    """Measured throughput of a [4096, H] x [H, 4H] product on `device` (median of `repetitions` timings).

    bf16 multiplies bfloat16 tensors: the kernel's throughput, without autocast's casts (those
    are work of the training step, which MFU counts against the machine). Each timing repeats the
    product for at least `min_seconds`, so that a small H is not timed by the call overhead.
    """
    dtype = torch.bfloat16 if bf16 else torch.float32
    a = torch.randn(4096, hidden_size, device=device, dtype=dtype)
    b = torch.randn(hidden_size, 4 * hidden_size, device=device, dtype=dtype)

    def timed(calls: int) -> float:
        synchronize(device)
        started = time.perf_counter()
        for _ in range(calls):
            a @ b
        synchronize(device)
        return (time.perf_counter() - started) / calls

    timed(3)  # warms up kernels and caches
    calls = max(1, math.ceil(min_seconds / max(timed(3), 1e-9)))
    seconds = statistics.median(timed(calls) for _ in range(repetitions))
    return 2 * 4096 * hidden_size * 4 * hidden_size / seconds
