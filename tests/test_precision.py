"""The precision a run trains in: `auto` follows the hardware (mocked here), emulated bf16 warns once,
the bench's `best` rows resolve to the same choice, and run.json records what was chosen and why."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY_SYNTHETIC, run_main
from replay_accelerated.training import precision
from replay_accelerated.training.measurements import cpu_model

CPU = torch.device("cpu")


def _decide(configured, device: torch.device = CPU, implementation: str = "replay_accelerated") -> tuple[str, str]:
    """The one decision (training/precision.py) as (used, why), on a device looked up afresh."""
    decided = precision.decide_precision(configured, implementation, precision.Bf16Support(device))
    assert decided.configured == configured
    return decided.used, decided.why


def _cpu_with(monkeypatch, *flags: str) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: ["avx2", *flags])


def _cuda_with(monkeypatch, capability: tuple[int, int]) -> torch.device:
    """A GPU of this compute capability as torch reports it: bf16 is native from 8.0 (Ampere), and plain
    `is_bf16_supported()` is true below it too, because torch emulates bf16 there."""
    name = "Tesla T4" if capability < (8, 0) else "NVIDIA A100"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation or capability >= (8, 0))
    return torch.device("cuda")


@pytest.mark.parametrize("flags, expected", [((), "32-true"), (("avx512f",), "32-true"),
                                             (("avx512f", "avx512_bf16"), "bf16-mixed"), (("amx_bf16",), "bf16-mixed")])
def test_auto_on_a_cpu_is_bf16_only_with_native_support(monkeypatch, flags: tuple, expected: str):
    _cpu_with(monkeypatch, *flags)
    used, why = _decide("auto")
    assert used == expected
    assert why.startswith("auto: ") and cpu_model() in why
    assert precision.native_bf16(CPU)[0] == (expected == "bf16-mixed")


@pytest.mark.parametrize("capability, ours, replay", [((8, 0), "bf16-mixed", "bf16-mixed"),
                                                      ((7, 5), "16-mixed", "32-true")])
def test_auto_on_a_gpu_is_bf16_only_where_native_else_fp16_for_our_models(monkeypatch, capability: tuple, ours: str,
                                                                           replay: str):
    device = _cuda_with(monkeypatch, capability)
    assert _decide("auto", device)[0] == ours
    for implementation in ("replay", "replay_nn"):  # RePlay's rows: no 16-mixed (REPLAY_PRECISIONS)
        assert _decide("auto", device, implementation)[0] == replay


def test_explicit_bf16_on_a_gpu_that_only_emulates_it_warns(monkeypatch, capsys):
    device = _cuda_with(monkeypatch, (7, 5))
    monkeypatch.setattr(precision, "_warned", set())
    # No GPU here: the probe's slow-down is made up.
    monkeypatch.setattr(precision, "matmul_flops_per_second", lambda device, hidden, bf16, **kwargs: 1 if bf16 else 4)
    assert _decide("bf16-mixed", device) == ("bf16-mixed", "configured")
    assert capsys.readouterr().out.startswith("Warning: bf16 precision without native support (no native bf16 on "
                                              "Tesla T4): a bf16 matrix product runs 4.00x slower")


def test_an_explicit_precision_is_kept_and_emulated_bf16_warns_once_with_the_measured_slowdown(monkeypatch, capsys):
    _cpu_with(monkeypatch)
    monkeypatch.setattr(precision, "_warned", set())
    assert _decide("32-true") == ("32-true", "configured")
    assert _decide(None) == ("32-true", "configured")
    assert capsys.readouterr().out == ""
    assert _decide("bf16-mixed") == ("bf16-mixed", "configured")
    warning = capsys.readouterr().out
    assert warning.startswith("Warning: bf16 precision without native support (no native bf16 on ")
    slowdown = float(warning.split(" matrix product runs ")[1].split("x ")[0])
    assert slowdown > 0 and "precision=auto" in warning
    _decide("bf16-mixed")
    assert capsys.readouterr().out == ""  # once per process


def test_native_cpus_do_not_warn(monkeypatch, capsys):
    _cpu_with(monkeypatch, "amx_bf16")
    monkeypatch.setattr(precision, "_warned", set())
    _decide("bf16-mixed")
    assert capsys.readouterr().out == ""


def test_the_device_is_looked_up_once_and_only_when_a_decision_needs_it(monkeypatch):
    lookups = []
    monkeypatch.setattr(precision, "native_bf16", lambda device: lookups.append(device) or (False, "no bf16 here"))
    bf16 = precision.Bf16Support(CPU)
    assert precision.decide_precision("32-true", "replay_accelerated", bf16).used == "32-true"
    assert lookups == []  # an explicit fp32 needs no lookup (on a GPU, none touches CUDA)
    for implementation in ("replay_accelerated", "replay"):
        assert precision.decide_precision("auto", implementation, bf16).why == "auto: no bf16 here"
    assert (bf16.native, bf16.why) == (False, "no bf16 here") and lookups == [CPU]


def test_the_matmul_probe_measures_a_positive_throughput():
    flops = precision.matmul_flops_per_second(CPU, 16, bf16=False, repetitions=2, min_seconds=0.001)
    assert 1e6 < flops < 1e15


@pytest.mark.parametrize("flags", [(), ("amx_bf16",)])
def test_the_bench_resolves_best_as_auto_and_skips_emulated_bf16(monkeypatch, flags: tuple):
    from replay_accelerated.modes.bench import resolve_variants

    _cpu_with(monkeypatch, *flags)
    native = bool(flags)

    def compose_variant(overrides: list[str]):
        values = dict(override.split("=", 1) for override in overrides)
        return OmegaConf.create({"model": {"name": "bert4rec", "implementation": values.get("model.implementation"),
                                           "params": {"training_params": {
                                               "precision": values.get("model.params.training_params.precision")}}}})

    variants = {
        "replay_best": ["model.implementation=replay", "model.params.model_params.loss_type=best",
                        "model.params.training_params.precision=best"],
        "fastest": ["model.params.training_params.precision=best"],
        "bf16_mixed": ["model.params.training_params.precision=bf16-mixed"],
    }
    resolved, skipped = resolve_variants(variants, compose_variant, precision.Bf16Support(CPU))
    expected = "bf16-mixed" if native else "32-true"
    assert resolved["replay_best"] == ["model.implementation=replay",
                                       "model.params.model_params.loss_type=CE_restricted",
                                       f"model.params.training_params.precision={expected}"]
    assert resolved["fastest"] == [f"model.params.training_params.precision={expected}"]
    assert list(skipped) == ([] if native else ["bf16_mixed"])
    assert all(reason.startswith("skipped: no native bf16 on ") for reason in skipped.values())


def test_a_run_records_its_precision_choice(tmp_path: Path):
    done = run_main(tmp_path, *TINY_SYNTHETIC, "model.params.training_params.max_epochs=1",
                    "model.params.training_params.precision=auto", "trainer.accelerator=cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(next(tmp_path.rglob("run.json")).read_text())
    expected, why = _decide("auto")
    assert run["precision"] == {"configured": "auto", "used": expected, "why": why}
    assert run["config"]["model"]["params"]["training_params"]["precision"] == expected
    assert f"Precision: {expected} ({why})" in done.stdout
