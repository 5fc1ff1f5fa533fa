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
"""

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from replay_accelerated.data.pipeline import EvaluationUsers
from replay_accelerated.data.formats import ITEM, TIMESTAMP, USER
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences, csr_offsets
from replay_accelerated.data.formats import read_local_log
from replay_accelerated.config import ConfigOrigin
from replay_accelerated.errors import UserError
from replay_accelerated.evaluation.offline import recommend
from replay_accelerated.models.files import STAMP_KEY, UntrustedCheckpoint, load_checkpoint
from replay_accelerated.training.runtime import apply_env, build_accelerated_model, check_writable


def run(cfg: DictConfig, origin: ConfigOrigin) -> pd.DataFrame:
    settings = cfg.mode.infer
    apply_env(cfg.env)
    checkpoint_path = Path(settings.checkpoint or Path(cfg.paths.checkpoint_dir) / cfg.model.save_name / "best.ckpt")
    output = Path(settings.output or Path(cfg.paths.results_dir) / cfg.model.save_name / "recommendations_infer.parquet")
    check_writable(cfg.paths)
    vocabulary, state = _load(checkpoint_path, cfg)

    events = read_local_log(Path(settings.input), cfg.dataset.feature_schema, cfg.dataset.separator)
    events = events.sort_values([USER, TIMESTAMP], kind="stable")
    known = vocabulary.encode(events[ITEM]) >= 0
    print(f"Read {len(events):,} interactions of {events[USER].nunique():,} users from {settings.input}; "
          f"dropped {int((~known).sum()):,} with items the model does not know")
    histories = _with_every_user(UserSequences.from_events(events[known], vocabulary), events[USER].unique())

    model, _ = build_accelerated_model(cfg, len(vocabulary))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = next((line for line in lines if line.startswith(("size mismatch", "Missing", "Unexpected"))), lines[0])
        raise UserError(f"checkpoint {checkpoint_path} does not fit the configured model ({detail}); "
                        "use the model and acceleration configs it was trained with") from None
    model.eval()
    no_truth = UserSequences(histories.user_ids, csr_offsets(np.zeros(len(histories))), np.zeros(0, np.int64))
    recommendations = recommend(model.next_item_scores, EvaluationUsers(histories, no_truth), vocabulary, settings.k,
                                model.max_seq_len, remove_seen=settings.remove_seen,
                                item_chunk_size=cfg.evaluation.item_chunk_size)
    output.parent.mkdir(parents=True, exist_ok=True)
    recommendations.to_parquet(output, index=False)
    print(f"Top-{settings.k} recommendations for {len(histories):,} users written to {output}")
    return recommendations


def _load(checkpoint_path: Path, cfg: DictConfig) -> tuple[ItemVocabulary, dict]:
    """The item vocabulary and the model weights, after checking they belong to the configured model."""
    items_path = checkpoint_path.with_name("items.parquet")
    for path in (checkpoint_path, items_path):
        if not path.is_file():
            raise UserError(f"{path} does not exist; train first (mode=train with model.save_name="
                            f"{cfg.model.save_name}) or set mode.infer.checkpoint to a best.ckpt next to its "
                            "items.parquet")
    try:
        checkpoint = load_checkpoint(checkpoint_path, cfg.trust_checkpoint)
    except UntrustedCheckpoint:
        raise
    except Exception as error:  # truncated or not a checkpoint at all
        raise UserError(f"{checkpoint_path} cannot be read as a checkpoint ({type(error).__name__}); "
                        "point mode.infer.checkpoint to a best.ckpt written by mode=train") from None
    vocabulary = ItemVocabulary(pd.read_parquet(items_path)["item_id"].to_numpy())
    stamp = checkpoint.get(STAMP_KEY, {})
    if stamp.get("model") != cfg.model.name:
        raise UserError(f"{checkpoint_path} holds a {stamp.get('model', 'foreign')} model, but the config says "
                        f"model.name={cfg.model.name}; choose the model config it was trained with")
    if stamp.get("n_items") != len(vocabulary):
        raise UserError(f"{checkpoint_path} was trained on {stamp.get('n_items')} items but {items_path.name} beside "
                        f"it lists {len(vocabulary)}; keep each checkpoint with the items.parquet of its run")
    state = {name.removeprefix("model."): value for name, value in checkpoint["state_dict"].items()
             if name.startswith("model.")}
    return vocabulary, state


def _with_every_user(histories: UserSequences, user_ids: np.ndarray) -> UserSequences:
    """`histories` plus an empty history for each user in `user_ids` who has none (both sorted by user)."""
    all_users = np.sort(user_ids)
    lengths = pd.Series(histories.lengths, index=histories.user_ids).reindex(all_users, fill_value=0).to_numpy()
    return UserSequences(all_users, csr_offsets(lengths), histories.items)
