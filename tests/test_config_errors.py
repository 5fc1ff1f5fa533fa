"""Config mistakes stop the run before any work, naming the key and the file it came from."""

from pathlib import Path

import pytest

from conftest import ROOT, compose, run_main
from replay_accelerated.config import CONFIG_DIR

CONFIG_FILES = sorted(str(path.relative_to(CONFIG_DIR)) for path in CONFIG_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_config_file_composes_and_validates(home: Path, name: str) -> None:
    """Each group file (a model file with its dataset's file) and each preset is a valid config."""
    group, _, stem = name.removesuffix(".yaml").rpartition("/")
    overrides = [f"{group}={stem}"] if group else []
    dataset = stem.split("_", 1)[1] if group == "model" and "_" in stem else stem if group == "dataset" else None
    if group == "model" and dataset:
        overrides.append(f"dataset={dataset}")
    if dataset in ("local", "sequences"):
        overrides.append(f"dataset.path={home / 'log.txt'}")
    if name in ("mode/infer.yaml", "mode/embeddings.yaml"):  # the file of the users they serve
        overrides.append(f"mode.{stem}.input={home / 'log.txt'}")
    if name == "dataset/item_features/movielens.yaml":  # read from the MovieLens archive itself
        overrides.append("dataset=movielens_1m")
    if name == "dataset/item_features/s3rec_beauty.yaml":  # the attribute file of the S3-Rec sequences
        overrides += ["dataset=s3rec_beauty", f"dataset.item_features.path={home / 'attributes.json'}"]
    cfg = compose(home, *overrides, config_name="config" if group else stem)
    if group == "model":  # save_name: <model>_<dataset>; a base model file runs on the default dataset, synthetic
        assert cfg.model.save_name == (stem if dataset else f"{stem}_synthetic") and cfg.model.name == stem.split("_")[0]
    if dataset:
        assert cfg.dataset.name == dataset


@pytest.mark.parametrize("preset, head, act_fn", [("config_ml20_switchback", "switchback_head", None),
                                                  ("config_ml20_swichback", "switchback_head", None),
                                                  ("config_ml20_accelerate", "linear_head", "selu")])
def test_the_reference_presets_compose_as_they_always_did(home: Path, preset: str, head: str, act_fn: str | None):
    """The reference project's presets keep their model, data, accelerations and output folder (`save_name`, which
    the per-dataset model files no longer state: it defaults to <model>_<dataset>)."""
    cfg = compose(home, config_name=preset)
    assert cfg.model.save_name == "bert4rec_movielens_20m"
    assert (cfg.model.name, cfg.dataset.name, cfg.dataset.source) == ("bert4rec", "movielens_20m", "movielens_20m")
    acceleration = cfg.acceleration.model.acceleration_config
    assert acceleration.head == head and acceleration.transformer_block.pff_block.act_fn == act_fn
    assert cfg.model.params.training_params.max_epochs == 20 and cfg.model.params.model_params.hidden_size == 256


def test_save_name_follows_the_dataset_unless_it_is_set(home: Path):
    """Outputs are named after what was trained: the default model on MovieLens-1M is not `bert4rec_synthetic`."""
    assert compose(home, "dataset=movielens_1m").model.save_name == "bert4rec_movielens_1m"
    local = ["dataset=local", f"dataset.path={home / 'log.csv'}", "model=sasrec_local"]
    assert compose(home, *local, "dataset.name=shop").model.save_name == "sasrec_shop"
    assert compose(home, *local, "model.save_name=mine").model.save_name == "mine"


def _error(result) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return result.stderr


def test_unknown_key_in_a_group_file_names_key_and_file(home: Path, main_in_process):
    own = home / "my_configs" / "model"
    own.mkdir(parents=True)
    text = (CONFIG_DIR / "model" / "bert4rec.yaml").read_text()
    (own / "typo.yaml").write_text(text.replace("block_count:", "block_cout:"))
    message = _error(main_in_process("--config-dir", str(home / "my_configs"), "model=typo"))
    assert "model.params.model_params.block_cout" in message
    assert "typo.yaml" in message and "block_count" in message  # the file, and the keys allowed there


def test_an_experiment_is_chosen_by_its_name_and_a_mistake_in_it_is_named(home: Path, main_in_process):
    result = main_in_process("bench_quick", "validate_only=true")  # the shortcut for experiment=bench_quick
    assert result.returncode == 0 and "mode=bench" in result.stdout, result.stderr[-2000:]
    assert "experiment=bench_quick" in _error(main_in_process("mode=bench_quick"))  # a mode in former versions
    own = home / "my_configs" / "experiment"
    own.mkdir(parents=True)
    (own / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - override /mode: bench\n"
                                   "mode:\n  bench:\n    stepz: 3\n")
    message = _error(main_in_process("--config-dir", str(home / "my_configs"), "experiment=mine"))
    assert "mode.bench.stepz" in message and "mine.yaml" in message and "warmup_steps" in message


def test_wrong_type_names_key_and_override(home: Path):
    message = _error(run_main(home, "model.params.training_params.batch_size=many"))  # a real process: no traceback
    assert "model.params.training_params.batch_size" in message and "batch_size=many" in message


def test_missing_required_value_names_key_and_file(main_in_process):
    message = _error(main_in_process("dataset=local"))
    assert "dataset.path" in message and "local.yaml" in message
    # A key of a group inside a group: the inner group's file, not the dataset's.
    message = _error(main_in_process("dataset=sequences", "dataset.path=x.txt", "dataset/item_features=s3rec_beauty"))
    assert "dataset.item_features.path" in message and "item_features/s3rec_beauty.yaml" in message, message


def test_bad_choice_and_range_are_explained(main_in_process):
    assert "sasrec" in _error(main_in_process("model.name=gpt"))
    assert "at least 2" in _error(main_in_process("model.params.model_params.max_seq_len=1"))
    assert "positive" in _error(main_in_process("model.params.training_params.batch_size=0"))
    assert "hidden_size" in _error(main_in_process("model.params.training_params.embedding_dim=17"))
    assert "at_least_one" in _error(main_in_process("model.params.model_params.masking=random"))


def test_added_unknown_key_is_rejected(main_in_process):
    message = _error(main_in_process("+model.params.training_params.learning_rat=0.1"))
    assert "learning_rat" in message and "learning_rate" in message


def test_a_loss_that_reads_the_head_weight_is_refused_with_the_int8_head(main_in_process):
    for loss in ("SCE", "CCE"):
        message = _error(main_in_process("acceleration=quantization", f"model.params.model_params.loss_type={loss}",
                                         "mode=inspect"))
        assert "switchback_head" in message and "int8" in message and "linear_head" in message


def test_loss_and_generator_parameters_are_checked_before_any_data_work(home: Path, main_in_process):
    message = _error(main_in_process("model.params.model_params.loss_type=SCE", "mode=inspect"))
    assert "model.params.model_params.n_buckets" in message and "bert4rec.yaml" in message
    message = _error(main_in_process("dataset.generator.n_clusters=0", "mode=inspect"))
    assert "dataset.generator" in message and "n_clusters must be at least 1" in message
    assert not (home / "data").exists()  # nothing was generated or prepared


def test_a_bench_variant_with_a_bad_config_stops_the_bench_before_any_run(home: Path, main_in_process):
    message = _error(main_in_process("bench_quick", "mode.bench.only=[broken]",
                                     "+mode.bench.variants.broken=['model.params.model_params.loss_type=SCE']"))
    assert "model.params.model_params.n_buckets" in message
    assert not (home / "results" / "bench").exists()


def test_a_logger_that_is_not_installed_is_named_with_its_package(main_in_process):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    message = _error(main_in_process("trainer.loggers=[csv,wandb]", "mode=inspect"))
    assert "trainer.loggers" in message and "pip install wandb" in message
    assert "'neptune' is not one of" in _error(main_in_process("trainer.loggers=[neptune]"))


@pytest.mark.parametrize("override", ["+model.params.model_params.block_cout=2", "model.params.model_params.block_cout=2"])
def test_a_typo_in_a_key_is_reported_before_torch_is_imported(home: Path, override: str):
    """The schema check needs only Hydra, OmegaConf and config.py: a mistyped key stops the run before the
    registries (and torch, Lightning, RePlay) load, which take seconds. Without a `+` Hydra would refuse the key
    itself (status 1, its own words); the command line's keys are checked against the schema before that."""
    import subprocess
    import sys

    script = ("import atexit, runpy, sys\n"
              "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules))\n"
              f"sys.argv = ['main.py', {override!r}]\n"
              f"runpy.run_path({str(ROOT / 'main.py')!r}, run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=home, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "unknown config key 'model.params.model_params.block_cout'" in result.stderr + result.stdout
    assert "torch imported: False" in result.stdout


@pytest.mark.parametrize("override, problem", [
    ("model.params.model_params.block_cout=2", "did you mean model.params.model_params.block_count?"),
    ("acceleration.model.acceleration_config.hed=x", "Keys allowed under acceleration.model.acceleration_config: "),
    ("trainer.acelerator=cpu", "unknown config key 'trainer.acelerator' on the command line"),
    ("model.params.model_params.block_count=2", None),
    ("model=sasrec_synthetic", None),  # a group's choice
    ("experiment=bench_quick", None),  # a group with no key of its own
    ("model.params.model_params.loss_params.anything=1", None),  # below a free-form mapping
    ("+model.params.model_params.block_cout=2", None),  # an added key: validate() reports it, with its file
    ("hydra.run.dir=x", None),
])
def test_command_line_keys_are_checked_against_the_schema(override: str, problem: str | None):
    from replay_accelerated.validation import command_line_key_problem

    found = command_line_key_problem(override)
    assert (found is None) == (problem is None) and (problem is None or problem in found), found

