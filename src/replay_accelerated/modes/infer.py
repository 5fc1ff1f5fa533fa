"""`mode=infer`: top-k recommendations from a saved model for the users of an interactions file.

Reads `best.ckpt` and the item vocabulary saved beside it (`items.parquet`), builds the model
from the command's model and acceleration configs, checks that the checkpoint was trained as
that model on a catalog of that size, then scores every user of `mode.infer.input` (any
file `dataset=local` reads, with the same `dataset.feature_schema`) and writes
(user_id, item_id, score, rank) in original ids to parquet.

- Items the model never saw cannot be read: they are dropped from the histories, and the log
  says how many.
- Users are scored from what remains; a user with no known item gets the model's
  recommendations for an empty history.
- Seen items are removed unless `mode.infer.remove_seen=false`.
- Among equal scores the larger item id ranks first, the order replay-rec's metrics use
  (evaluation/ranking.py); users are scored a batch at a time (evaluation/offline.recommend).
- `mode.infer.candidates` ranks only given items (RePlay's `candidates_to_score`): a list of item ids
  for every user, or a file of (user, item) pairs with `dataset.feature_schema`'s column names, each
  user among their own. Candidates the model does not know (and pairs of users not in the input) are
  counted and dropped; a user left with fewer than k candidates gets fewer recommendations.

The output is written under a temporary name and renamed over `mode.infer.output` only when complete
(outputs.atomic_path): a failed write (a full disk) leaves the earlier file there as it was. The input,
candidates and output paths are checked before the model is loaded.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from replay_accelerated.config import ConfigOrigin
from replay_accelerated.data.formats import ITEM, USER, local_file, read_local_log
from replay_accelerated.data.pipeline import EvaluationUsers
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences, csr_offsets
from replay_accelerated.errors import UserError
from replay_accelerated.evaluation.offline import recommend
from replay_accelerated.outputs import atomic_path, check_output_path, writing
from replay_accelerated.training.environment import apply_env, check_writable
from replay_accelerated.training.trained_model import load_trained_model, read_histories, with_every_user


def run(cfg: DictConfig, origin: ConfigOrigin) -> pd.DataFrame:
    settings = cfg.mode.infer
    apply_env(cfg.env)
    output = Path(settings.output or Path(cfg.paths.results_dir) / cfg.model.save_name / "recommendations_infer.parquet")
    check_writable(cfg.paths)
    check_output_path(output, "mode.infer.output")
    local_file(settings.input, "mode.infer.input")
    if isinstance(settings.candidates, str):
        local_file(settings.candidates, "mode.infer.candidates")
    model, vocabulary = load_trained_model(cfg, settings.checkpoint)
    histories = read_histories(cfg, settings.input, vocabulary)
    candidates = _candidates(settings.candidates, cfg, vocabulary, histories.user_ids)
    no_truth = UserSequences(histories.user_ids, csr_offsets(np.zeros(len(histories))), np.zeros(0, np.int64))
    recommendations = recommend(model.next_item_scores, EvaluationUsers(histories, no_truth), vocabulary, settings.k,
                                model.max_seq_len, remove_seen=settings.remove_seen,
                                item_chunk_size=cfg.evaluation.item_chunk_size, candidates=candidates)
    with writing(output, "mode.infer.output"), atomic_path(output) as temporary:
        recommendations.to_parquet(temporary, index=False)
    print(f"Top-{settings.k} recommendations for {len(histories):,} users written to {output}")
    return recommendations


def _candidates(setting, cfg: DictConfig, vocabulary: ItemVocabulary,
                user_ids: np.ndarray) -> np.ndarray | UserSequences | None:
    """`mode.infer.candidates` as item indices: one list for every user, or per user (aligned with `user_ids`)."""
    if setting is None:
        return None
    if OmegaConf.is_list(setting):
        try:
            ids = pd.Series(list(setting)).astype(vocabulary.item_ids.dtype)
        except (TypeError, ValueError):
            raise UserError(f"mode.infer.candidates {list(setting)[:3]}... are not item ids of this model "
                            f"({vocabulary.item_ids.dtype}, e.g. {vocabulary.item_ids[0]!r})") from None
        encoded = vocabulary.encode(ids)
        print(f"Candidates: {int((encoded >= 0).sum()):,} items for every user; dropped {int((encoded < 0).sum()):,} "
              "the model does not know")
        return np.unique(encoded[encoded >= 0])
    pairs = read_local_log(Path(setting), cfg.dataset.feature_schema, cfg.dataset.separator,
                           key="mode.infer.candidates", pairs_only=True, encoding=cfg.dataset.encoding)
    known = (vocabulary.encode(pairs[ITEM]) >= 0) & pairs[USER].isin(user_ids)
    print(f"Candidates: {int(known.sum()):,} (user, item) pairs from {setting}; dropped {int((~known).sum()):,} "
          "with an item the model does not know or a user not in mode.infer.input")
    per_user = UserSequences.from_events(pairs[known].drop_duplicates().sort_values(USER, kind="stable"), vocabulary)
    return with_every_user(per_user, user_ids)
