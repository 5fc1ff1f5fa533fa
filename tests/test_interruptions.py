"""Interrupted and failed runs: SIGTERM stops like Ctrl+C (exit 143, then resume), a failed run leaves every
file of the earlier run as it was (compared by hash), and one run at a time writes a save name's folders."""

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PINNED_PRECISION, ROOT, TINY_SYNTHETIC, run_main
from replay_accelerated.errors import UserError
from replay_accelerated.outputs import FolderLock, atomic_path, check_writable

NAME = "bert4rec_synthetic"
QUICK = [*TINY_SYNTHETIC, "model.params.training_params.max_epochs=1", "dataset.generator.n_users=300"]
RUN = [*TINY_SYNTHETIC, "model.params.training_params.max_epochs=4", "model.params.training_params.patience=4",
       "dataset.generator.n_users=3000"]  # epochs of a few seconds: long enough to be stopped inside one


def _hashes(home: Path) -> dict[str, str]:
    """sha256 of every file a run leaves in its checkpoint and results folders."""
    files = [*(home / "checkpoints" / NAME).glob("*"), *(home / "results" / NAME).glob("*")]
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in files
            if path.is_file() and path.name != ".lock"}


def test_sigterm_before_training_exits_143(home: Path, main_in_process, monkeypatch):
    import replay_accelerated.modes.train as train

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM was not handled")

    monkeypatch.setattr(train, "prepare_data", terminated)
    result = main_in_process(*QUICK)
    assert result.returncode == 143
    assert "stopped by SIGTERM" in result.stderr and "Traceback" not in result.stderr
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler of before is back


def _stopped_by_sigterm_mid_epoch(home: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`main.py` with RUN and `overrides`, sent SIGTERM in its second epoch; returns how it ended."""
    env = {**os.environ, "REPLAY_ACCELERATED_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, str(ROOT / "main.py"), PINNED_PRECISION, *RUN, *overrides]
    process = subprocess.Popen(command, cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = home / "checkpoints" / NAME / "unfinished" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # into the second epoch
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [[], ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
                                            "env.OMP_NUM_THREADS=1"]], ids=["one process", "ddp"])
def test_sigterm_during_training_exits_143_keeps_the_earlier_run_and_resumes(home: Path, processes: list[str]):
    finished = run_main(home, *QUICK, "model.params.training_params.max_epochs=2")
    assert finished.returncode == 0, finished.stderr[-3000:]
    earlier = _hashes(home)
    assert any(name.endswith("complete.json") for name in earlier)

    stopped = _stopped_by_sigterm_mid_epoch(home, *processes)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "stopped by SIGTERM" in stopped.stderr
    assert _hashes(home) == earlier  # the finished run's files, complete.json included, untouched

    resumed = run_main(home, *RUN, *processes)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout
    assert not (home / "checkpoints" / NAME / "unfinished").exists()


@pytest.mark.slow
def test_a_run_that_fails_after_training_leaves_the_earlier_run_as_it_was(home: Path, main_in_process, monkeypatch):
    import replay_accelerated.modes.train as train

    assert main_in_process(*QUICK).returncode == 0
    earlier = _hashes(home)
    assert len(earlier) >= 8  # checkpoints, vocabulary, completion mark, metrics, recommendations, run.json

    def full_disk(recommendations, data, cfg, results_dir):
        raise OSError(28, "No space left on device", str(results_dir / "metrics_test.csv"))

    monkeypatch.setattr(train, "write_report", full_disk)
    failed = main_in_process(*QUICK, "env.SEED=7")  # another configuration: trains anew, then cannot write
    assert failed.returncode == 2
    last_line = failed.stderr.strip().splitlines()[-1]  # one paragraph, no traceback of ours
    assert last_line.startswith("error: No space left on device") and "metrics_test.csv" in last_line
    assert _hashes(home) == earlier


def test_a_second_run_into_the_same_folders_is_refused(home: Path, main_in_process):
    with FolderLock(home / "checkpoints" / NAME, "use another save name"):
        with pytest.raises(UserError, match="another run"):
            with FolderLock(home / "checkpoints" / NAME, "use another save name"):
                pass
        result = main_in_process(*QUICK)
    assert result.returncode == 2
    assert "another run" in result.stderr and "model.save_name" in result.stderr
    assert not (home / "results" / NAME / "run.json").exists()
    with FolderLock(home / "checkpoints" / NAME, "use another save name"):  # released: free again
        pass


def _probe_many(folder: str, times: int) -> int:
    failures = 0
    for _ in range(times):
        try:
            check_writable(folder, "paths.results_dir")
        except UserError:
            failures += 1
    return failures


def test_writability_probes_of_two_processes_never_collide(tmp_path: Path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        failures = pool.starmap(_probe_many, [(str(tmp_path), 1500)] * 2)
    assert failures == [0, 0]
    assert not list(tmp_path.iterdir())  # every probe removed


def test_the_run_folders_themselves_are_checked_before_any_work(home: Path, main_in_process):
    (home / "results").mkdir()
    (home / "results" / NAME).write_text("a file where the run's folder should be")
    result = main_in_process(*QUICK)
    assert result.returncode == 2
    assert f"results/{NAME}" in result.stderr and "model.save_name" in result.stderr
    assert not (home / "checkpoints" / NAME / "unfinished").exists()


def test_an_atomic_write_that_fails_leaves_the_earlier_file(tmp_path: Path):
    target = tmp_path / "out.txt"
    target.write_text("earlier")
    with pytest.raises(OSError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise OSError(28, "No space left on device", str(temporary))
    assert target.read_text() == "earlier"
    assert [path.name for path in tmp_path.iterdir()] == ["out.txt"]
    with atomic_path(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new"


def test_a_checkpoint_that_cannot_be_written_stops_naming_it_and_keeps_the_earlier_one(tmp_path: Path, monkeypatch):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from replay_accelerated.training.checkpoints import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 0}, tmp_path / "last.ckpt")

    def full_disk(self, checkpoint, path, storage_options=None):
        Path(path).write_bytes(b"half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", full_disk)
    with pytest.raises(UserError, match="last.ckpt") as stopped:
        io.save_checkpoint({"epoch": 1}, tmp_path / "last.ckpt")
    assert "left as it was" in str(stopped.value)
    monkeypatch.undo()
    assert io.load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 0
    assert [path.name for path in tmp_path.iterdir()] == ["last.ckpt"]


def _outlive(started, seconds: float) -> None:
    started.set()  # the fork hooks have run by now
    time.sleep(seconds)


def test_a_forked_child_does_not_keep_the_lock_of_a_finished_run(tmp_path: Path):
    """DataLoader workers are forked while the run holds its lock; a run in the same process after it (mode=optimize's
    trials) must find the folder free even while such a child lives on."""
    context = multiprocessing.get_context("fork")
    started = context.Event()
    with FolderLock(tmp_path, "use another save name"):
        child = context.Process(target=_outlive, args=(started, 5))
        child.start()
        assert started.wait(10)
    try:
        with FolderLock(tmp_path, "use another save name"):
            pass
    finally:
        child.terminate()
        child.join()


def test_a_run_without_checkpoints_leaves_a_stopped_runs_unfinished_folder_alone(home: Path, main_in_process):
    """The steps mode (like RePlay's baseline) writes no checkpoint of ours: a stopped run's `unfinished/` under the
    same save name is neither published as this run's nor marked complete; it stays for that run's resume."""
    unfinished = home / "checkpoints" / NAME / "unfinished"
    unfinished.mkdir(parents=True)
    (unfinished / "last.ckpt").write_bytes(b"a stopped run's checkpoint")
    result = main_in_process(*QUICK, "mode.steps=2", "mode.warmup_steps=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (unfinished / "last.ckpt").read_bytes() == b"a stopped run's checkpoint"
    assert not (home / "checkpoints" / NAME / "last.ckpt").exists()
    assert not (home / "checkpoints" / NAME / "complete.json").exists()
