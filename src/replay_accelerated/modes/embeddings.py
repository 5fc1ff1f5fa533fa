"""`mode=embeddings`: the item and user vectors of a saved model, for retrieval outside it.

The model scores item i for a user as `user_vector . item_vector[i] + bias[i]`: the user vector is the
hidden state at the position that predicts the next item (`model.user_vectors`), the item vectors and
biases are the item head's weight rows and bias. Written as parquet, with original ids, under
`mode.embeddings.output` (default `paths.results_dir/<save_name>/embeddings/`):

- `items.parquet`: item_id, vector (list of H floats), bias (0 for a head without one, SASRec's);
- `users.parquet`: user_id, vector, for every user of `mode.embeddings.input` (read as `mode=infer`
  reads its input: items the model never saw are dropped, a user with none gets the empty history's).

Any index that ranks by inner product (plus the bias, e.g. as one more dimension with a constant 1 on
the user's side) then reproduces the model's ranking. A SwitchBack head's vectors are its float master
weights; the model itself scores through int8, so its scores differ from these by the quantization error.

Both files are written under temporary names and renamed into place together, only when both are complete
(outputs.atomic_path): a failed write (a full disk) leaves the earlier pair there as it was.
"""

from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig

from replay_accelerated.config import ConfigOrigin
from replay_accelerated.data.formats import ITEM, USER, local_file
from replay_accelerated.evaluation.offline import user_vectors
from replay_accelerated.outputs import atomic_path, check_output_path, writing
from replay_accelerated.training.environment import apply_env, check_writable
from replay_accelerated.training.trained_model import load_trained_model, read_histories


def run(cfg: DictConfig, origin: ConfigOrigin) -> tuple[pd.DataFrame, pd.DataFrame]:
    settings = cfg.mode.embeddings
    apply_env(cfg.env)
    out_dir = Path(settings.output or Path(cfg.paths.results_dir) / cfg.model.save_name / "embeddings")
    check_writable(cfg.paths)
    check_output_path(out_dir, "mode.embeddings.output", folder=True)
    local_file(settings.input, "mode.embeddings.input")
    model, vocabulary = load_trained_model(cfg, settings.checkpoint, "mode.embeddings.checkpoint")
    histories = read_histories(cfg, settings.input, vocabulary, "mode.embeddings.input")

    weight = model.head.weight.detach().float()  # [n_items, H]
    bias = model.head.bias.detach().float() if model.head.bias is not None else torch.zeros(len(weight))
    items = pd.DataFrame({ITEM: vocabulary.item_ids, "vector": list(weight.numpy()), "bias": bias.numpy()})

    users = pd.DataFrame({USER: histories.user_ids, "vector": list(user_vectors(model, histories))})  # rows: views

    with (writing(out_dir, "mode.embeddings.output"), atomic_path(out_dir / "items.parquet") as items_file,
          atomic_path(out_dir / "users.parquet") as users_file):
        items.to_parquet(items_file, index=False)
        users.to_parquet(users_file, index=False)
    print(f"Vectors of {len(items):,} items and {len(users):,} users ({weight.shape[1]} dimensions) written to "
          f"{out_dir}; score = user vector . item vector + item bias")
    return items, users
