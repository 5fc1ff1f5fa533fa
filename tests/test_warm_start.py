"""Warm start (`model.params.training_params.init_from`): a checkpoint's weights carried into a model of a
changed catalog, item by item, by original id."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY_SYNTHETIC, run_main
from replay_accelerated.data.sequences import ItemVocabulary
from replay_accelerated.errors import ConfigError
from replay_accelerated.models import Bert4Rec, SasRec
from replay_accelerated.models.files import STAMP_KEY
from replay_accelerated.training.warm_start import warm_start

SIZES = dict(max_seq_len=10, hidden_size=16, block_count=2, head_count=2, dropout_rate=0.1)


def _saved(model, item_ids: np.ndarray, folder: Path) -> Path:
    """`model` as mode=train saves it: best.ckpt (Lightning's state_dict keys) and items.parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    name = "bert4rec" if isinstance(model, Bert4Rec) else "sasrec"
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save({"state_dict": state, STAMP_KEY: {"fingerprint": None, "model": name, "n_items": model.n_items}},
               folder / "best.ckpt")
    pd.DataFrame({"item_id": item_ids}).to_parquet(folder / "items.parquet", index=False)
    return folder / "best.ckpt"


def _cfg(name: str, checkpoint: Path):
    return OmegaConf.create({"model": {"name": name, "save_name": "x",
                                       "params": {"training_params": {"init_from": str(checkpoint)}}},
                             "trust_checkpoint": False})


@pytest.mark.parametrize("cls", [Bert4Rec, SasRec])
def test_known_items_score_as_before_and_new_items_keep_their_fresh_rows(tmp_path: Path, cls):
    old_ids = np.arange(100, 160)  # 60 items
    new_ids = np.sort(np.concatenate([old_ids[old_ids % 7 != 0], np.arange(500, 513)]))  # 8 gone, 13 new
    old = cls(n_items=len(old_ids), **SIZES).eval()
    checkpoint = _saved(old, old_ids, tmp_path / "old")
    new = cls(n_items=len(new_ids), **SIZES).eval()
    fresh = new.state_dict()
    fresh = {key: value.clone() for key, value in fresh.items()}
    counts = warm_start(new, ItemVocabulary(new_ids), _cfg("bert4rec" if cls is Bert4Rec else "sasrec", checkpoint))
    assert counts == {"known_items": 52, "new_items": 13, "dropped_items": 8}

    known_ids = np.intersect1d(old_ids, new_ids)
    old_index, new_index = np.searchsorted(old_ids, known_ids), np.searchsorted(new_ids, known_ids)
    histories = torch.from_numpy(np.random.default_rng().choice(len(known_ids), size=(6, 8)))  # known items only
    old_history = torch.from_numpy(old_index)[histories]
    new_history = torch.from_numpy(new_index)[histories]
    old_history[:2, :3], new_history[:2, :3] = old.pad_id, new.pad_id  # padding too
    with torch.no_grad():
        before, after = old.score_next(old_history), new.score_next(new_history)
    torch.testing.assert_close(after[:, new_index], before[:, old_index], atol=1e-6, rtol=0)
    new_positions = np.flatnonzero(~np.isin(new_ids, old_ids))
    for key in ("item_embedding.weight", "head.bias"):
        if key in fresh and fresh[key] is not None:
            torch.testing.assert_close(new.state_dict()[key][new_positions], fresh[key][new_positions])


def test_a_checkpoint_of_other_sizes_is_refused_naming_the_key(tmp_path: Path):
    checkpoint = _saved(SasRec(n_items=30, **SIZES), np.arange(30), tmp_path / "old")
    bigger = SasRec(n_items=30, **{**SIZES, "hidden_size": 32})
    with pytest.raises(ConfigError, match="model.params.training_params.init_from: .* in the checkpoint but"):
        warm_start(bigger, ItemVocabulary(np.arange(30)), _cfg("sasrec", checkpoint))


def test_ids_of_another_type_match_nothing_and_are_refused_naming_both_types(tmp_path: Path):
    checkpoint = _saved(SasRec(n_items=30, **SIZES), np.arange(100, 130).astype(str).astype(object), tmp_path / "old")
    with pytest.raises(ConfigError, match="none of this dataset's 30 items is among the checkpoint's 30: the "
                                          "checkpoint's items.parquet holds item ids of type str, this dataset's of "
                                          "type int64; .* or drop model.params.training_params.init_from"):
        warm_start(SasRec(n_items=30, **SIZES), ItemVocabulary(np.arange(100, 130)), _cfg("sasrec", checkpoint))


def test_a_checkpoint_of_another_catalog_is_refused_naming_both_sizes(tmp_path: Path):
    checkpoint = _saved(SasRec(n_items=30, **SIZES), np.arange(30), tmp_path / "old")
    with pytest.raises(ConfigError, match="none of this dataset's 20 items is among the checkpoint's 30 \\(item ids "
                                          "of type int64 in both\\); point .* to a checkpoint trained on this catalog"):
        warm_start(SasRec(n_items=20, **SIZES), ItemVocabulary(np.arange(500, 520)), _cfg("sasrec", checkpoint))


@pytest.mark.slow  # two trainings and an infer run; see pyproject
def test_fine_tuning_from_a_checkpoint_brings_frequent_new_items_into_the_top_10(tmp_path: Path):
    """Train on a log, then go on training (init_from) on the log with new items that follow every item
    divisible by 10; the users whose history ends with such an item should get its new follower."""
    from replay_accelerated.config import Generator
    from replay_accelerated.data.synthetic import generate_interactions

    settings = {override.split("=")[0].rsplit(".", 1)[1]: override.split("=")[1] for override in TINY_SYNTHETIC
                if override.startswith("dataset.generator.")}
    log = generate_interactions(Generator(**{key: int(value) for key, value in settings.items()}))
    log["rating"] = 5.0
    log.to_csv(tmp_path / "old.csv", index=False)
    leaders = log[log["item_id"] % 10 == 0]
    followers = leaders.assign(item_id=leaders["item_id"] + 1000)  # same second, after its leader (stable sort)
    grown = pd.concat([log, followers]).sort_values(["user_id", "timestamp"], kind="stable")
    grown.to_csv(tmp_path / "new.csv", index=False)

    model = [override for override in TINY_SYNTHETIC if not override.startswith("dataset.")]
    common = [*model, "dataset=local", "model=bert4rec_local", "model.params.training_params.max_epochs=6"]
    first = run_main(tmp_path, *common, f"dataset.path={tmp_path / 'old.csv'}", "model.save_name=old")
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = tmp_path / "checkpoints" / "old" / "best.ckpt"
    second = run_main(tmp_path, *common, f"dataset.path={tmp_path / 'new.csv'}", "model.save_name=new",
                      f"model.params.training_params.init_from={checkpoint}")
    assert second.returncode == 0, second.stderr[-3000:]
    run = json.loads((tmp_path / "results" / "new" / "run.json").read_text())
    assert run["warm_start"]["new_items"] == followers["item_id"].nunique()

    # Users whose newest item leads to a new one: is it in their top 10?
    histories = log.groupby("user_id").head(15).groupby("user_id").filter(
        lambda events: events["item_id"].iloc[-1] % 10 == 0)
    histories.to_csv(tmp_path / "ask.csv", index=False)
    asked = run_main(tmp_path, "infer", *common, f"dataset.path={tmp_path / 'new.csv'}", "model.save_name=new",
                     f"mode.infer.input={tmp_path / 'ask.csv'}")
    assert asked.returncode == 0, asked.stderr[-3000:]
    top = pd.read_parquet(tmp_path / "results" / "new" / "recommendations_infer.parquet")
    wanted = histories.groupby("user_id")["item_id"].last() + 1000
    share = top.merge(wanted.rename("item_id").reset_index()).groupby("user_id").size().reindex(
        wanted.index, fill_value=0).gt(0).mean()
    print(f"new follower in the top 10 of {share:.0%} of {len(wanted)} users whose history leads to it")
    assert share > 0.5
