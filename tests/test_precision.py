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
    used, why = precision.resolve_precision("auto", CPU)
    assert used == expected
    assert why.startswith("auto: ") and cpu_model() in why
    assert precision.native_bf16(CPU)[0] == (expected == "bf16-mixed")


@pytest.mark.parametrize("capability, ours, replay", [((8, 0), "bf16-mixed", "bf16-mixed"),
                                                      ((7, 5), "16-mixed", "32-true")])
def test_auto_on_a_gpu_is_bf16_only_where_native_else_fp16_for_our_models(monkeypatch, capability: tuple, ours: str,
                                                                           replay: str):
    device = _cuda_with(monkeypatch, capability)
    assert precision.resolve_precision("auto", device)[0] == ours
    assert precision.resolve_precision("auto", device, fp16=False)[0] == replay  # RePlay's rows: no 16-mixed


def test_explicit_bf16_on_a_gpu_that_only_emulates_it_warns(monkeypatch, capsys):
    device = _cuda_with(monkeypatch, (7, 5))
    monkeypatch.setattr(precision, "_warned", set())
    # No GPU here: the probe's slow-down is made up.
    monkeypatch.setattr(precision, "matmul_flops_per_second", lambda device, hidden, bf16, **kwargs: 1 if bf16 else 4)
    assert precision.resolve_precision("bf16-mixed", device) == ("bf16-mixed", "configured")
    assert capsys.readouterr().out.startswith("Warning: bf16 precision without native support (no native bf16 on "
                                              "Tesla T4): a bf16 matrix product runs 4.00x slower")


def test_an_explicit_precision_is_kept_and_emulated_bf16_warns_once_with_the_measured_slowdown(monkeypatch, capsys):
    _cpu_with(monkeypatch)
    monkeypatch.setattr(precision, "_warned", set())
    assert precision.resolve_precision("32-true", CPU) == ("32-true", "configured")
    assert precision.resolve_precision(None, CPU) == ("32-true", "configured")
    assert capsys.readouterr().out == ""
    assert precision.resolve_precision("bf16-mixed", CPU) == ("bf16-mixed", "configured")
    warning = capsys.readouterr().out
    assert warning.startswith("Warning: bf16 precision without native support (no native bf16 on ")
    slowdown = float(warning.split(" matrix product runs ")[1].split("x ")[0])
    assert slowdown > 0 and "precision=auto" in warning
    precision.resolve_precision("bf16-mixed", CPU)
    assert capsys.readouterr().out == ""  # once per process


def test_native_cpus_do_not_warn(monkeypatch, capsys):
    _cpu_with(monkeypatch, "amx_bf16")
    monkeypatch.setattr(precision, "_warned", set())
    precision.resolve_precision("bf16-mixed", CPU)
    assert capsys.readouterr().out == ""


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
    resolved, skipped = resolve_variants(variants, compose_variant, CPU)
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
    expected, why = precision.auto_precision(CPU)
    assert run["precision"] == {"configured": "auto", "used": expected, "why": f"auto: {why}"}
    assert run["config"]["model"]["params"]["training_params"]["precision"] == expected
    assert f"Precision: {expected} (auto: {why})" in done.stdout
