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
A run computes in bf16 through its precision or through bf16 parameters (`computes_in_bf16`).
"""

import math
import os
import statistics
import time

import torch

from replay_accelerated.config import AccelerationConfig
from replay_accelerated.errors import ConfigError
from replay_accelerated.training.measurements import cpu_flags, cpu_model, synchronize

AUTO = "auto"
# `precision`: auto, or what Lightning takes (null: 32-true).
PRECISIONS = (AUTO, None, "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64", "64-true")


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


def computes_in_bf16(config) -> bool:
    """Whether a composed run config (a DictConfig, or the `config` of a run.json) multiplies in bfloat16:
    through a bf16 training precision (bf16-mixed, bf16-true) or through bf16 parameters
    (`acceleration...dtype: bf16` casts the model whatever the precision, so 32-true then computes in bf16)."""
    precision = str(config["model"]["params"]["training_params"]["precision"] or "32-true")
    acceleration = config.get("acceleration") or {}
    dtype = acceleration.get("model", {}).get("acceleration_config", {}).get("dtype", AccelerationConfig.dtype)
    return precision.startswith("bf16") or dtype == "bf16"


def auto_precision(device: torch.device, fp16: bool = True) -> tuple[str, str]:
    """The precision `auto` means on `device`, and why. `fp16=False` for models that are not
    trained in 16-mixed (RePlay's, see config.py): 32-true instead."""
    bf16, why = native_bf16(device)
    if bf16:
        return "bf16-mixed", why
    if device.type == "cuda" and fp16:
        return "16-mixed", f"{why}; fp16 with loss scaling instead"
    return "32-true", why


def resolve_precision(configured: str | None, device: torch.device, fp16: bool = True) -> tuple[str, str]:
    """The precision a run with `configured` (a Lightning precision, `auto`, or null for fp32)
    trains in on `device`, and why; warns when it is bf16 that this device only emulates."""
    if configured == AUTO:
        precision, why = auto_precision(device, fp16)
        return precision, f"auto: {why}"
    precision = str(configured or "32-true")
    if precision.startswith("bf16"):
        bf16, why = native_bf16(device)
        if not bf16:
            _warn_emulated_bf16(device, why)
    return precision, "configured"


_warned: set[str] = set()


def _warn_emulated_bf16(device: torch.device, why: str) -> None:
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
